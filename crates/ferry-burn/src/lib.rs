//! `ferry-burn`: Burn tensors (`burn::tensor::Tensor<D, K>`, any kind) ⇄ [`HostArray`] and ⇄
//! DLPack, on burn 0.22.1.
//!
//! Zero-copy backends: **Flex** (burn's CPU backend; any strides, zero and negative included)
//! and **NdArray** (deprecated in 0.22 but still shipped). The array shares the backend's
//! buffer, keeps the primitive alive, and is read-only: Burn writes in place only into buffers
//! nobody else holds, so it never writes under a ferry view. Tensors on every other backend
//! (CUDA, wgpu, CubeCL CPU, LibTorch, ...) come out through Burn's own data read: one copy,
//! recorded as a device transfer. Use [`to_host_batch`] for many tensors at once: each device's
//! reads are issued in one [`Transaction`] before any is waited on.
//!
//! Bool tensors come out as 8-bit 0/1 in every storage form (`Bool(U32)` is narrowed, one copy).
//! Quantized tensors are refused with a typed error: call `dequantize()` explicitly first.

#![allow(deprecated)] // burn-ndarray is deprecated in 0.22 but still a shipped CPU backend.

use std::marker::PhantomData;

use burn::backend::flex::{FlexTensor, Layout as FlexLayout};
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
use burn::tensor::{
    AllocationProperty, BoolStore, Bytes, DType as BurnDType, Device, Float, Tensor, TensorData,
    Transaction,
};
use ferry_core::{
    Access, Backend, CopyPolicy, CopyReason, DType, DlpackTensor, Error, HostArray, Result,
    StorageLayout, StorageLayoutRef, record_copy,
};

mod kind;

pub use kind::BurnKind;

/// Burn's tensor kinds, re-exported for naming `Tensor<D, K>` types.
pub mod burn_kinds {
    pub use burn::tensor::{Bool, Float, Int};
}

/// The backend name used in errors.
pub const BACKEND: &str = "burn";

/// The ferry dtype of a burn dtype (`None` for quantized tensors). Every bool storage maps to
/// [`DType::Bool`]; `Flex32` is stored as f32.
pub fn ferry_dtype(dtype: BurnDType) -> Option<DType> {
    Some(match dtype {
        BurnDType::F64 => DType::F64,
        BurnDType::F32 | BurnDType::Flex32 => DType::F32,
        BurnDType::F16 => DType::F16,
        BurnDType::BF16 => DType::BF16,
        BurnDType::I64 => DType::I64,
        BurnDType::I32 => DType::I32,
        BurnDType::I16 => DType::I16,
        BurnDType::I8 => DType::I8,
        BurnDType::U64 => DType::U64,
        BurnDType::U32 => DType::U32,
        BurnDType::U16 => DType::U16,
        BurnDType::U8 => DType::U8,
        BurnDType::Bool(_) => DType::Bool,
        BurnDType::QFloat(_) => return None,
    })
}

/// The burn dtype for a ferry dtype.
pub fn burn_dtype(dtype: DType) -> Result<BurnDType> {
    Ok(match dtype {
        DType::F64 => BurnDType::F64,
        DType::F32 => BurnDType::F32,
        DType::F16 => BurnDType::F16,
        DType::BF16 => BurnDType::BF16,
        DType::I64 => BurnDType::I64,
        DType::I32 => BurnDType::I32,
        DType::I16 => BurnDType::I16,
        DType::I8 => BurnDType::I8,
        DType::U64 => BurnDType::U64,
        DType::U32 => BurnDType::U32,
        DType::U16 => BurnDType::U16,
        DType::U8 => BurnDType::U8,
        DType::Bool => BurnDType::Bool(BoolStore::Native),
        _ => {
            return Err(Error::UnsupportedDtype {
                backend: BACKEND,
                dtype,
                hint: "burn has no complex or fp8 tensors; cast to f32 or f64 first".into(),
            });
        }
    })
}

fn quantized(shape: Vec<usize>) -> Error {
    Error::Quantized {
        backend: BACKEND,
        shape,
        hint: "call dequantize() explicitly to read its values",
    }
}

/// The Burn backend: `Burn<D, K>` stands for `burn::tensor::Tensor<D, K>` (rank `D`, kind
/// `Float`, `Int` or `Bool`) on a `burn::tensor::Device`, for code that is generic over
/// [`Backend`]. Its CPU device is Flex; [`Burn::cpu()`](Burn::cpu) needs no rank.
#[derive(Debug, Clone, Copy, Default)]
pub struct Burn<const D: usize = 2, K = Float>(PhantomData<K>);

impl Burn {
    /// Burn's CPU device (Flex), for any rank and kind: `Burn::cpu()`.
    pub fn cpu() -> Device {
        Device::flex()
    }
}

impl<const D: usize, K: BurnKind> Backend for Burn<D, K> {
    const NAME: &'static str = BACKEND;
    const DTYPES: &'static [DType] = K::DTYPES;
    type Tensor = Tensor<D, K>;
    type Device = Device;

    fn cpu() -> Device {
        Device::flex()
    }

    fn view(tensor: &Tensor<D, K>) -> Result<HostArray> {
        view(tensor)
    }

    fn to_host(tensor: &Tensor<D, K>) -> Result<HostArray> {
        to_host(tensor)
    }

    fn to_dlpack(tensor: &Tensor<D, K>) -> Result<DlpackTensor> {
        to_dlpack(tensor)
    }

    fn from_host(array: &HostArray, device: &Device) -> Result<Tensor<D, K>> {
        from_host(array, device)
    }

    fn into_tensor(array: HostArray, device: &Device) -> Result<Tensor<D, K>> {
        into_tensor(array, device)
    }

    fn from_dlpack(tensor: DlpackTensor, device: &Device) -> Result<Tensor<D, K>> {
        from_dlpack(tensor, device)
    }
}

/// A zero-copy, read-only host array over a Flex or NdArray tensor; tensors of other backends
/// are refused with [`Error::NeedsCopy`] (use [`to_host`]).
pub fn view<const D: usize, K: BurnKind>(tensor: &Tensor<D, K>) -> Result<HostArray> {
    let dtype = plain_dtype(tensor)?;
    if let Some(view) = primitive_view::<D>(tensor.clone().into_dispatch().kind)? {
        return Ok(view);
    }
    let shape = tensor.shape().to_vec();
    let strides = ferry_core::layout::row_major_strides(&shape).unwrap_or_default();
    // Off the CPU backends a read is a device transfer; a 32-bit bool storage on them must be
    // narrowed to ferry's 8-bit bools.
    let reason = match tensor.dtype() {
        BurnDType::Bool(BoolStore::U32) => CopyReason::Cast,
        _ => CopyReason::DeviceTransfer,
    };
    Err(Error::NeedsCopy {
        reason,
        shape,
        strides,
        dtype,
    })
}

/// A host array over a burn tensor's data: zero-copy on Flex and NdArray (see [`view`]), one
/// copy through Burn's own read elsewhere (a [`Transaction`], so a device error is an `Err`).
pub fn to_host<const D: usize, K: BurnKind>(tensor: &Tensor<D, K>) -> Result<HostArray> {
    plain_dtype(tensor)?;
    if let Some(view) = primitive_view::<D>(tensor.clone().into_dispatch().kind)? {
        return Ok(view);
    }
    // Through a transaction: an eager read whose device errors are `Err`s.
    let mut read = to_host_batch(std::slice::from_ref(tensor))?;
    Ok(read.pop().expect("one array per tensor"))
}

/// Reads many tensors: CPU-backend tensors as zero-copy views, the rest in one [`Transaction`]
/// per device, whose device→host transfers are all issued before any is waited on. A batch
/// spanning devices or backends is split: burn-cubecl runs a transaction on its first tensor's
/// client (another device's tensor is a `ForeignHandle` error), and burn-dispatch panics on one
/// that mixes backends.
pub fn to_host_batch<const D: usize, K: BurnKind>(
    tensors: &[Tensor<D, K>],
) -> Result<Vec<HostArray>> {
    let mut out: Vec<Option<HostArray>> = Vec::with_capacity(tensors.len());
    // Per device: the device, the batch positions read there, and their transaction.
    let mut reads: Vec<(Device, Vec<usize>, Transaction)> = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        plain_dtype(t)?;
        match primitive_view::<D>(t.clone().into_dispatch().kind)? {
            Some(view) => out.push(Some(view)),
            None => {
                out.push(None);
                let device = t.device();
                let at = match reads.iter().position(|(d, ..)| *d == device) {
                    Some(at) => at,
                    None => {
                        reads.push((device, Vec::new(), Transaction::default()));
                        reads.len() - 1
                    }
                };
                let (_, positions, transaction) = &mut reads[at];
                positions.push(i);
                *transaction = std::mem::take(transaction).register(t.clone());
            }
        }
    }
    // `try_execute` reads eagerly and reports a device error as an `Err` (a tensor's lazy
    // `into_data` panics on its first byte access instead).
    for (_, positions, transaction) in reads {
        let datas = transaction
            .try_execute()
            .map_err(|e| Error::backend_message(BACKEND, format!("{e:?}")))?;
        for (i, data) in positions.into_iter().zip(datas) {
            out[i] = Some(from_tensor_data(data)?);
        }
    }
    Ok(out
        .into_iter()
        .map(|a| a.expect("every slot filled"))
        .collect())
}

/// The ferry dtype of a tensor, or [`Error::Quantized`] (with its shape) for a quantized one.
fn plain_dtype<const D: usize, K: BurnKind>(tensor: &Tensor<D, K>) -> Result<DType> {
    ferry_dtype(tensor.dtype()).ok_or_else(|| quantized(tensor.shape().to_vec()))
}

/// Views a CPU-backend primitive without copying; `None` for backends that need Burn's read.
#[allow(unreachable_patterns)] // other variants exist when users enable more burn backends
fn primitive_view<const D: usize>(kind: DispatchTensorKind) -> Result<Option<HostArray>> {
    match kind {
        DispatchTensorKind::Flex(t) => match t {
            BackendTensor::Float(p) | BackendTensor::Int(p) | BackendTensor::Bool(p) => {
                flex_view::<D>(p)
            }
            BackendTensor::Quantized(_) => Err(quantized(Vec::new())),
            _ => Ok(None),
        },
        DispatchTensorKind::NdArray(t) => match t {
            BackendTensor::Float(p) | BackendTensor::Int(p) | BackendTensor::Bool(p) => {
                ndarray_view::<D>(p).map(Some)
            }
            BackendTensor::Quantized(_) => Err(quantized(Vec::new())),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Views a Flex primitive; `None` for bool storage wider than a byte (read through Burn).
fn flex_view<const D: usize>(p: FlexTensor) -> Result<Option<HostArray>> {
    let dtype = ferry_dtype(p.dtype()).ok_or_else(|| quantized(p.layout().shape().to_vec()))?;
    if dtype == DType::Bool && p.dtype().size() != 1 {
        return Ok(None);
    }
    let (shape, strides) = axes::<D>(p.layout().shape(), p.layout().strides())?;
    let offset = p.layout().start_offset();
    let buffer = p.bytes();
    let (addr, len) = (buffer.as_ptr() as usize, buffer.len());
    // SAFETY: the Flex tensor's shared byte buffer, on the heap and held by `p`; Burn writes in
    // place only into buffers nobody else holds, and `p` is a holder.
    let storage = unsafe { Frozen::new(p, addr, len) };
    let layout = StorageLayoutRef {
        dtype,
        shape: &shape,
        strides: &strides,
        offset,
    };
    HostArray::from_storage_ref(storage, layout).map(Some)
}

fn ndarray_view<const D: usize>(p: NdArrayTensor) -> Result<HostArray> {
    macro_rules! view {
        ($s:expr, $dtype:expr) => {{
            let v = $s.view();
            let (shape, strides) = axes::<D>(v.shape(), v.strides())?;
            (v.as_ptr().cast::<u8>(), shape, strides, $dtype)
        }};
    }
    let (data, shape, strides, dtype) = match &p {
        NdArrayTensor::F64(s) => view!(s, DType::F64),
        NdArrayTensor::F32(s) => view!(s, DType::F32),
        NdArrayTensor::I64(s) => view!(s, DType::I64),
        NdArrayTensor::I32(s) => view!(s, DType::I32),
        NdArrayTensor::I16(s) => view!(s, DType::I16),
        NdArrayTensor::I8(s) => view!(s, DType::I8),
        NdArrayTensor::U64(s) => view!(s, DType::U64),
        NdArrayTensor::U32(s) => view!(s, DType::U32),
        NdArrayTensor::U16(s) => view!(s, DType::U16),
        NdArrayTensor::U8(s) => view!(s, DType::U8),
        NdArrayTensor::Bool(s) => view!(s, DType::Bool),
    };
    // The storage a host array needs is the span the (valid) ndarray view reaches.
    let (lo, len) = ferry_core::layout::byte_span(dtype, &shape, &strides)?.unwrap_or((0, 0));
    let size = dtype.size_in_bytes().unwrap_or(1) as isize;
    let addr = (data as usize).wrapping_add_signed(lo);
    // SAFETY: the bytes a valid ndarray view of the NdArray storage reaches (an ArcArray's heap
    // buffer or borrowed `Bytes`, held by `p`); Burn copies on write when a storage is shared,
    // and `p` shares it.
    let storage = unsafe { Frozen::new(p, addr, len) };
    let layout = StorageLayoutRef {
        dtype,
        shape: &shape,
        strides: &strides,
        offset: (-lo / size) as usize,
    };
    HostArray::from_storage_ref(storage, layout)
}

/// A primitive's shape and strides, copied out of it before it moves into the array's storage
/// (so a view allocates nothing for them): exactly `D` axes, the rank the tensor's type says.
fn axes<const D: usize>(shape: &[usize], strides: &[isize]) -> Result<([usize; D], [isize; D])> {
    match (
        <[usize; D]>::try_from(shape),
        <[isize; D]>::try_from(strides),
    ) {
        (Ok(shape), Ok(strides)) => Ok((shape, strides)),
        _ => Err(Error::backend_message(
            BACKEND,
            format!(
                "a tensor of rank {D} has a primitive of shape {shape:?} and strides {strides:?}"
            ),
        )),
    }
}

/// A burn value (a Flex or NdArray primitive, or Burn's `Bytes`) and the bytes of it a host
/// array reads. It is `Send` exactly when the value is; it is `Sync` because it offers no access
/// to the value through `&Frozen` (the field is private and never read), so sharing a reference
/// shares nothing — the reasoning of std's `Exclusive`.
struct Frozen<T> {
    _value: T,
    /// Address of the first byte the array may read.
    addr: usize,
    /// Bytes from `addr` on that the array may read.
    len: usize,
}

impl<T> Frozen<T> {
    /// # Safety
    ///
    /// `addr..addr + len` lies in a heap buffer that `value` keeps alive and in place wherever
    /// it moves, and that Burn does not write while `value` holds it (see the `Storage` impl).
    unsafe fn new(value: T, addr: usize, len: usize) -> Frozen<T> {
        Frozen {
            _value: value,
            addr,
            len,
        }
    }
}

// SAFETY: no method or field of `Frozen` reaches the `T` through a shared reference, so
// concurrent `&Frozen<T>` cannot touch it; `Send` still requires `T: Send`.
unsafe impl<T: Send> Sync for Frozen<T> {}

// SAFETY: callers build a `Frozen` only over bytes of its value's own buffer (a Flex tensor's
// shared bytes, the span of an NdArray view, Burn's `Bytes`), which the value keeps alive and
// in place; Burn writes in place only into buffers nobody else holds, and the value is such a
// holder, so the bytes do not change while it lives.
unsafe impl<T: Send + 'static> ferry_core::Storage for Frozen<T> {
    fn bytes(&self) -> (*const u8, usize) {
        (self.addr as *const u8, self.len)
    }
}

/// Burn's `Bytes` from its data read, owned alone (the address was taken with `as_mut_ptr`).
struct ReadBytes(Frozen<Bytes>);

// SAFETY: as for `Frozen`; and `addr` was taken with `Bytes::as_mut_ptr`, whose `DerefMut`
// copies a shared buffer first (copy on write), so the buffer is this `Bytes`' alone and the
// address carries write permission; the `Bytes` is then moved in here and never lent out.
unsafe impl ferry_core::Storage for ReadBytes {
    fn bytes(&self) -> (*const u8, usize) {
        self.0.bytes()
    }
}

// SAFETY: see the `Storage` impl.
unsafe impl ferry_core::StorageMut for ReadBytes {
    fn bytes_mut(&mut self) -> (*mut u8, usize) {
        (self.0.addr as *mut u8, self.0.len)
    }
}

/// A host array over Burn's own data read (row-major, host bytes), recorded as one copy.
fn from_tensor_data(data: TensorData) -> Result<HostArray> {
    let shape = data.shape().to_vec();
    let dtype = ferry_dtype(data.dtype()).ok_or_else(|| quantized(shape.clone()))?;
    if data.dtype() == BurnDType::Bool(BoolStore::U32) {
        return narrow_bool(shape, data);
    }
    let (mut bytes, _, _) = data.into_parts();
    let record = record_copy(bytes.len() as u64, CopyReason::DeviceTransfer);
    let (addr, len) = (bytes.as_mut_ptr() as usize, bytes.len());
    let layout = StorageLayout::row_major(dtype, shape)?;
    // SAFETY: `bytes`' own heap buffer, which `as_mut_ptr` made unique (see `ReadBytes`).
    let storage = ReadBytes(unsafe { Frozen::new(bytes, addr, len) });
    Ok(HostArray::from_storage_mut(storage, layout)?.with_copy(record))
}

/// Narrows a 32-bit bool storage to ferry's 8-bit 0/1 bools (one copy).
fn narrow_bool(shape: Vec<usize>, data: TensorData) -> Result<HostArray> {
    let values: Vec<u8> = match data.dtype() {
        BurnDType::Bool(BoolStore::U32) => data
            .as_slice::<u32>()
            .map_err(|e| Error::backend_message(BACKEND, format!("{e:?}")))?
            .iter()
            .map(|&v| u8::from(v != 0))
            .collect(),
        _ => data.as_bytes().iter().map(|&v| u8::from(v != 0)).collect(),
    };
    let record = record_copy(values.len() as u64, CopyReason::Cast);
    // 0/1 bytes are valid bools (and bool views check every byte anyway).
    let layout = StorageLayout::row_major(DType::Bool, shape)?;
    Ok(HostArray::from_storage_mut(values, layout)?.with_copy(record))
}

/// A burn tensor on `device` with the array's values. On the Flex backend the array's memory
/// is shared without copying (any strides); on NdArray a uniquely owned buffer moves in; every
/// other case copies once through `TensorData`.
pub fn from_host<const D: usize, K: BurnKind>(
    array: &HostArray,
    device: &Device,
) -> Result<Tensor<D, K>> {
    into_tensor(array.clone(), device)
}

/// Like [`from_host`], taking the array by value so an owned buffer can move in.
pub fn into_tensor<const D: usize, K: BurnKind>(
    array: HostArray,
    device: &Device,
) -> Result<Tensor<D, K>> {
    if array.ndim() != D {
        return Err(Error::TensorRank {
            backend: BACKEND,
            shape: array.shape().to_vec(),
            expected: D,
            found: array.ndim(),
            hint: format!(
                "ask for `ferry::Burn<{found}>` (or `Burn<{found}, K>` for another kind; \
                 `ferry::Burn` alone is `Burn<2, Float>`), or reshape the array to {D} axes first",
                found = array.ndim()
            ),
        });
    }
    let dtype = burn_dtype(array.dtype())?;
    if !K::accepts(array.dtype()) {
        return Err(Error::UnsupportedDtype {
            backend: BACKEND,
            dtype: array.dtype(),
            hint: K::HINT.into(),
        });
    }
    if array.dtype() == DType::Bool {
        if !(array.access() == Access::Exclusive && array.owner_is_unique()) {
            // Burn must never see a bool byte other than 0 or 1. Bools someone else may write
            // (a producer's memory, ferry's own exported writable) are copied, each byte
            // checked in the copy; a check of shared memory before sharing it would not hold.
            let checked = HostArray::from_array(array.to_array::<bool>()?);
            return into_tensor(checked, device);
        }
        array.view::<bool>()?; // ferry's own, held alone: nobody else writes it
    }
    #[allow(unreachable_patterns)] // other variants exist when users enable more burn backends
    match device.as_dispatch() {
        // An empty array has no memory to share (and a dangling address Burn's casts refuse);
        // nor has a misaligned one (`np.frombuffer` at an odd offset) that Burn can read in
        // place: Burn casts its bytes to elements, so it gets the copy below.
        burn::backend::DispatchDevice::Flex(_) if !array.is_empty() && aligned(&array) => {
            return Ok(flex_share::<D, K>(array, dtype));
        }
        burn::backend::DispatchDevice::NdArray(_) => return ndarray_move::<D, K>(array),
        _ => {}
    }
    let contiguous = array.to_contiguous(CopyPolicy::IfNeeded)?;
    let bytes = contiguous.as_bytes().expect("row-major").to_vec();
    record_copy(bytes.len() as u64, CopyReason::FrameworkStorage);
    let data = TensorData::from_bytes_vec(bytes, contiguous.shape().to_vec(), dtype);
    Ok(Tensor::from_data(data, (device, dtype)))
}

/// Whether the array's first element sits at a multiple of its element size (the alignment of
/// every dtype Burn holds), as Burn's typed reads of shared bytes need.
fn aligned(array: &HostArray) -> bool {
    let size = array.itemsize().unwrap_or(1).max(1);
    (array.as_ptr() as usize).is_multiple_of(size)
}

/// Shares the array's memory with a Flex tensor: Burn's copy-on-write never writes into it.
fn flex_share<const D: usize, K: BurnKind>(array: HostArray, dtype: BurnDType) -> Tensor<D, K> {
    let (first, len) = array.byte_span();
    let shape = array.shape().to_vec();
    let strides = array.strides().to_vec();
    let size = array.itemsize().unwrap_or(1);
    let start = (array.as_ptr() as usize - first as usize) / size;
    let shared = bytes::Bytes::from_owner(HostSpan {
        array,
        lo: first as usize,
        len,
    });
    let bytes = Bytes::from_shared(shared, AllocationProperty::Other);
    let layout = FlexLayout::new(shape.into(), strides, start);
    let primitive = FlexTensor::new(bytes, layout, dtype);
    Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::Flex(K::wrap_flex(primitive)),
        autodiff: DispatchAutodiffContext::Disabled,
    })
}

/// Moves the array into an NdArray tensor: no copy for a uniquely owned row-major buffer, one
/// copy otherwise.
fn ndarray_move<const D: usize, K: BurnKind>(array: HostArray) -> Result<Tensor<D, K>> {
    fn arc<T: ferry_core::Element>(
        array: HostArray,
    ) -> Result<burn::backend::ndarray::SharedArray<T>> {
        Ok(array.into_array::<T>()?.into_shared())
    }
    let primitive = match array.dtype() {
        DType::F64 => NdArrayTensor::from(arc::<f64>(array)?),
        DType::F32 => NdArrayTensor::from(arc::<f32>(array)?),
        DType::I64 => NdArrayTensor::from(arc::<i64>(array)?),
        DType::I32 => NdArrayTensor::from(arc::<i32>(array)?),
        DType::I16 => NdArrayTensor::from(arc::<i16>(array)?),
        DType::I8 => NdArrayTensor::from(arc::<i8>(array)?),
        DType::U64 => NdArrayTensor::from(arc::<u64>(array)?),
        DType::U32 => NdArrayTensor::from(arc::<u32>(array)?),
        DType::U16 => NdArrayTensor::from(arc::<u16>(array)?),
        DType::U8 => NdArrayTensor::from(arc::<u8>(array)?),
        DType::Bool => NdArrayTensor::from(arc::<bool>(array)?),
        dtype => {
            return Err(Error::UnsupportedDtype {
                backend: "burn ndarray backend",
                dtype,
                hint: "the NdArray backend has no half-precision storage; use the Flex backend or cast to f32".into(),
            });
        }
    };
    Ok(Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::NdArray(K::wrap_ndarray(primitive)),
        autodiff: DispatchAutodiffContext::Disabled,
    }))
}

/// The bytes of a host array's span, as an owner `bytes::Bytes` can hold.
struct HostSpan {
    #[expect(dead_code, reason = "held to keep the span's memory alive")]
    array: HostArray,
    lo: usize,
    len: usize,
}

impl AsRef<[u8]> for HostSpan {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            // Not reached: empty arrays are not shared (`into_tensor`).
            return &[];
        }
        // SAFETY: [lo, lo + len) is exactly the byte span the array's validated layout reaches,
        // readable while `self.array` keeps its owner alive.
        unsafe { std::slice::from_raw_parts(self.lo as *const u8, self.len) }
    }
}

/// Exports a burn tensor over DLPack (host memory; zero-copy on Flex and NdArray).
pub fn to_dlpack<const D: usize, K: BurnKind>(tensor: &Tensor<D, K>) -> Result<DlpackTensor> {
    Ok(to_host(tensor)?.into_dlpack())
}

/// Imports a DLPack tensor onto a burn device (host memory; device memory is copied by the
/// producer's adapter first).
pub fn from_dlpack<const D: usize, K: BurnKind>(
    tensor: DlpackTensor,
    device: &Device,
) -> Result<Tensor<D, K>> {
    into_tensor(tensor.into_host()?, device)
}
