//! `ferry-burn`: Burn tensors (`burn::tensor::Tensor<D, K>`, any kind) ⇄ [`HostArray`] and ⇄
//! DLPack, on burn 0.22.1.
//!
//! Zero-copy backends: **Flex** (burn's CPU backend; any strides, zero and negative included)
//! and **NdArray** (deprecated in 0.22 but still shipped). The array shares the backend's
//! buffer, keeps the primitive alive, and is read-only: Burn writes in place only into buffers
//! nobody else holds, so it never writes under a ferry view. Tensors on every other backend
//! (CUDA, wgpu, CubeCL CPU, LibTorch, ...) come out through Burn's own data read: one copy,
//! recorded as a device transfer. Use [`to_host_batch`] for many tensors at once: all reads are
//! issued in one [`Transaction`] before any is waited on.
//!
//! Bool tensors come out as 8-bit 0/1 in every storage form (`Bool(U32)` is narrowed, one copy).
//! Quantized tensors are refused with a typed error: call `dequantize()` explicitly first.

#![allow(deprecated)] // burn-ndarray is deprecated in 0.22 but still a shipped CPU backend.

use std::sync::Arc;

use burn::backend::flex::{FlexTensor, Layout as FlexLayout};
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
use burn::tensor::{
    AllocationProperty, BoolStore, Bytes, DType as BurnDType, Device, Tensor, TensorData,
    Transaction,
};
use ferry_core::{
    Access, CopyPolicy, CopyReason, DType, DlpackTensor, Error, HostArray, MemoryKind, Owner,
    RawParts, Result, record_copy,
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
                hint: "burn has no complex or fp8 tensors; cast to f32 or f64 first",
            });
        }
    })
}

fn quantized(shape: Vec<usize>) -> Error {
    Error::UnsupportedLayout {
        shape,
        strides: Vec::new(),
        dtype: DType::Raw(ferry_core::DTypeDesc {
            code: ferry_core::DTypeDesc::INT,
            bits: 8,
            lanes: 1,
        }),
        reason: "the burn tensor is quantized; call dequantize() explicitly to read its values",
    }
}

/// A host array over a burn tensor's data: zero-copy on Flex and NdArray, one copy elsewhere.
pub fn to_host<const D: usize, K: BurnKind>(tensor: &Tensor<D, K>) -> Result<HostArray> {
    to_host_with(tensor, CopyPolicy::IfNeeded)
}

/// [`to_host`] with an explicit copy policy.
pub fn to_host_with<const D: usize, K: BurnKind>(
    tensor: &Tensor<D, K>,
    policy: CopyPolicy,
) -> Result<HostArray> {
    let host = match primitive_view(tensor.clone().into_dispatch().kind)? {
        Some(view) => view,
        None => {
            let dtype =
                ferry_dtype(tensor.dtype()).ok_or_else(|| quantized(tensor.shape().to_vec()))?;
            if policy == CopyPolicy::Never {
                let shape = tensor.shape().to_vec();
                let strides = ferry_core::layout::row_major_strides(&shape).unwrap_or_default();
                return Err(Error::NeedsCopy {
                    reason: CopyReason::DeviceTransfer,
                    shape,
                    strides,
                    dtype,
                });
            }
            return from_tensor_data(
                tensor
                    .clone()
                    .try_into_data()
                    .map_err(|e| Error::backend_message(BACKEND, format!("{e:?}")))?,
            );
        }
    };
    match policy {
        CopyPolicy::Always => host.to_contiguous(CopyPolicy::Always),
        _ => Ok(host),
    }
}

/// Reads many tensors: CPU-backend tensors as zero-copy views, the rest in one [`Transaction`]
/// whose device→host transfers are all issued before any is waited on.
pub fn to_host_batch<const D: usize, K: BurnKind>(
    tensors: &[Tensor<D, K>],
) -> Result<Vec<HostArray>> {
    let mut out: Vec<Option<HostArray>> = Vec::with_capacity(tensors.len());
    let mut pending = Vec::new();
    let mut transaction = Transaction::default();
    for (i, t) in tensors.iter().enumerate() {
        if matches!(t.dtype(), BurnDType::QFloat(_)) {
            return Err(quantized(t.shape().to_vec()));
        }
        match primitive_view(t.clone().into_dispatch().kind)? {
            Some(view) => out.push(Some(view)),
            None => {
                out.push(None);
                pending.push(i);
                transaction = transaction.register(t.clone());
            }
        }
    }
    if !pending.is_empty() {
        let datas = transaction
            .try_execute()
            .map_err(|e| Error::backend_message(BACKEND, format!("{e:?}")))?;
        for (i, data) in pending.into_iter().zip(datas) {
            out[i] = Some(from_tensor_data(data)?);
        }
    }
    Ok(out
        .into_iter()
        .map(|a| a.expect("every slot filled"))
        .collect())
}

/// Views a CPU-backend primitive without copying; `None` for backends that need Burn's read.
#[allow(unreachable_patterns)] // other variants exist when users enable more burn backends
fn primitive_view(kind: DispatchTensorKind) -> Result<Option<HostArray>> {
    match kind {
        DispatchTensorKind::Flex(t) => match t {
            BackendTensor::Float(p) | BackendTensor::Int(p) | BackendTensor::Bool(p) => {
                flex_view(p)
            }
            BackendTensor::Quantized(_) => Err(quantized(Vec::new())),
            _ => Ok(None),
        },
        DispatchTensorKind::NdArray(t) => match t {
            BackendTensor::Float(p) | BackendTensor::Int(p) | BackendTensor::Bool(p) => {
                ndarray_view(p).map(Some)
            }
            BackendTensor::Quantized(_) => Err(quantized(Vec::new())),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Views a Flex primitive; `None` for bool storage wider than a byte (read through Burn).
fn flex_view(p: FlexTensor) -> Result<Option<HostArray>> {
    let dtype = ferry_dtype(p.dtype()).ok_or_else(|| quantized(p.layout().shape().to_vec()))?;
    let size = p.dtype().size();
    if dtype == DType::Bool && size != 1 {
        return Ok(None);
    }
    let layout = p.layout();
    let shape = layout.shape().to_vec();
    let strides = layout.strides().to_vec();
    let buffer = p.bytes();
    ferry_core::layout::check_in_storage(
        dtype,
        &shape,
        &strides,
        layout.start_offset(),
        buffer.len(),
    )?;
    let data = if shape.contains(&0) {
        std::ptr::null()
    } else {
        // In bounds: check_in_storage put element [0, .., 0] inside the buffer.
        buffer.as_ptr().wrapping_add(layout.start_offset() * size)
    };
    let parts = RawParts {
        data,
        dtype,
        shape,
        strides,
        memory: MemoryKind::Cpu,
        access: Access::ReadOnly,
    };
    let owner: Owner = Arc::new(KeepAlive(p));
    // SAFETY: the elements live in the Flex tensor's shared byte buffer, kept alive by `owner`;
    // the layout was checked to stay inside it; Burn only writes into uniquely held buffers and
    // `owner` holds a reference, so the memory does not change while the array lives.
    unsafe { HostArray::from_raw_parts(parts, owner) }.map(Some)
}

fn ndarray_view(p: NdArrayTensor) -> Result<HostArray> {
    macro_rules! view {
        ($s:expr, $dtype:expr) => {{
            let v = $s.view();
            (
                v.as_ptr().cast::<u8>(),
                v.shape().to_vec(),
                v.strides().to_vec(),
                $dtype,
            )
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
    let parts = RawParts {
        data,
        dtype,
        shape,
        strides,
        memory: MemoryKind::Cpu,
        access: Access::ReadOnly,
    };
    let owner: Owner = Arc::new(KeepAlive(p));
    // SAFETY: the view's elements live in the NdArray storage (an ArcArray or borrowed Bytes)
    // held by `owner`; ndarray views are valid layouts; Burn copies on write when a storage is
    // shared, and `owner` shares it, so the memory does not change while the array lives.
    unsafe { HostArray::from_raw_parts(parts, owner) }
}

/// Keeps a burn value alive as a ferry owner. It is `Send` exactly when the value is; it is
/// `Sync` because it offers no access at all through `&KeepAlive` (the field is private and
/// never read), so sharing a reference shares nothing — the reasoning of std's `Exclusive`.
struct KeepAlive<T>(T);

// SAFETY: no method or field of `KeepAlive` is reachable through a shared reference, so
// concurrent `&KeepAlive<T>` cannot touch the `T`; `Send` still requires `T: Send`.
unsafe impl<T: Send> Sync for KeepAlive<T> {}

/// A host array over Burn's own data read (row-major, host bytes), recorded as one copy.
fn from_tensor_data(data: TensorData) -> Result<HostArray> {
    let shape = data.shape().to_vec();
    let dtype = ferry_dtype(data.dtype()).ok_or_else(|| quantized(shape.clone()))?;
    if data.dtype() == BurnDType::Bool(BoolStore::U32) {
        return narrow_bool(shape, data);
    }
    let (mut bytes, _, _) = data.into_parts();
    let record = record_copy(bytes.len() as u64, CopyReason::DeviceTransfer);
    ferry_core::layout::check_in_storage(dtype, &shape, &strides_of(&shape)?, 0, bytes.len())?;
    let strides = strides_of(&shape)?;
    let ptr = bytes.as_mut_ptr().cast_const();
    let parts = RawParts {
        data: ptr,
        dtype,
        shape,
        strides,
        memory: MemoryKind::Cpu,
        access: Access::Exclusive,
    };
    let owner: Owner = Arc::new(KeepAlive(bytes));
    // SAFETY: `bytes` holds the row-major elements Burn read (length checked above), owned by
    // `owner` alone (moving `Bytes` does not move its heap buffer); `ptr` comes from
    // `as_mut_ptr`.
    Ok(unsafe { HostArray::from_raw_parts(parts, owner) }?.with_copy(record))
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
    HostArray::from_vec(shape, values)?
        .cast_to(DType::U8)
        .map(|a| retag_bool(a).with_copy(record))
}

fn retag_bool(a: HostArray) -> HostArray {
    // 0/1 bytes are valid bools: re-describe the same buffer with the bool dtype. The keep-alive
    // takes the place of `a`, which is dropped, so the new array is as exclusive as `a` was.
    let parts = RawParts {
        data: a.as_ptr(),
        dtype: DType::Bool,
        shape: a.shape().to_vec(),
        strides: a.strides().to_vec(),
        memory: a.memory(),
        access: a.access(),
    };
    let owner = a.keep_alive();
    drop(a);
    // SAFETY: same memory, layout and access as `a`, whose pointer (and its write permission)
    // is reused; `owner` keeps the memory alive and `a` is gone, so nothing else reaches it; bool
    // and u8 have the same size and the bytes are 0 or 1.
    unsafe { HostArray::from_raw_parts(parts, owner) }.expect("same layout as a valid array")
}

/// Row-major strides for a shape Burn produced, or a layout overflow error.
fn strides_of(shape: &[usize]) -> Result<Vec<isize>> {
    ferry_core::layout::row_major_strides(shape).ok_or_else(|| Error::LayoutOverflow {
        shape: shape.iter().map(|&d| d as i64).collect(),
        strides: Vec::new(),
        itemsize_bits: 8,
    })
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
        return Err(Error::RankMismatch {
            shape: array.shape().to_vec(),
            expected: D,
            found: array.ndim(),
        });
    }
    let dtype = burn_dtype(array.dtype())?;
    if !K::accepts(array.dtype()) {
        return Err(Error::UnsupportedDtype {
            backend: BACKEND,
            dtype: array.dtype(),
            hint: K::HINT,
        });
    }
    #[allow(unreachable_patterns)] // other variants exist when users enable more burn backends
    match device.as_dispatch() {
        burn::backend::DispatchDevice::Flex(_) => return flex_share::<D, K>(array, dtype),
        burn::backend::DispatchDevice::NdArray(_) => return ndarray_move::<D, K>(array),
        _ => {}
    }
    let contiguous = array.to_contiguous(CopyPolicy::IfNeeded)?;
    let bytes = contiguous.as_bytes().expect("row-major").to_vec();
    record_copy(bytes.len() as u64, CopyReason::FrameworkStorage);
    let data = TensorData::from_bytes_vec(bytes, contiguous.shape().to_vec(), dtype);
    Ok(Tensor::from_data(data, (device, dtype)))
}

/// Shares the array's memory with a Flex tensor: Burn's copy-on-write never writes into it.
fn flex_share<const D: usize, K: BurnKind>(
    array: HostArray,
    dtype: BurnDType,
) -> Result<Tensor<D, K>> {
    let (lo, hi) = span_bytes(&array)?;
    let shape = array.shape().to_vec();
    let strides = array.strides().to_vec();
    let size = array.itemsize().unwrap_or(1);
    let start = (array.as_ptr() as usize - lo) / size;
    let shared = bytes::Bytes::from_owner(HostSpan {
        array,
        lo,
        len: hi - lo,
    });
    let bytes = Bytes::from_shared(shared, AllocationProperty::Other);
    let layout = FlexLayout::new(shape.into(), strides, start);
    let primitive = FlexTensor::new(bytes, layout, dtype);
    Ok(Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::Flex(K::wrap_flex(primitive)),
        autodiff: DispatchAutodiffContext::Disabled,
    }))
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
                hint: "the NdArray backend has no half-precision storage; use the Flex backend or cast to f32",
            });
        }
    };
    Ok(Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::NdArray(K::wrap_ndarray(primitive)),
        autodiff: DispatchAutodiffContext::Disabled,
    }))
}

/// The lowest and one-past-highest byte address the array's layout reaches (burn dtypes are
/// whole bytes). The layout was checked when the array was made, so these fit the address
/// space; the arithmetic is checked all the same.
fn span_bytes(array: &HostArray) -> Result<(usize, usize)> {
    let base = array.as_ptr() as usize;
    let size = array.itemsize().unwrap_or(1) as i128;
    let Some((lo, hi)) = ferry_core::layout::offset_range(array.shape(), array.strides())? else {
        return Ok((base, base));
    };
    let first = base as i128 + lo as i128 * size;
    let end = base as i128 + (hi as i128 + 1) * size;
    match (usize::try_from(first), usize::try_from(end)) {
        (Ok(first), Ok(end)) => Ok((first, end)),
        _ => Err(Error::LayoutOverflow {
            shape: array.shape().iter().map(|&d| d as i64).collect(),
            strides: array.strides().iter().map(|&s| s as i64).collect(),
            itemsize_bits: array.dtype().desc().total_bits(),
        }),
    }
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
