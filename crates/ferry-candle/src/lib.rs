//! `ferry-candle`: `candle_core::Tensor` ⇄ [`HostArray`] and ⇄ DLPack.
//!
//! - CPU tensors come out zero-copy: the array points into candle's storage with the tensor's
//!   real strides and offset (transposes, narrows and broadcasts included), keeps the tensor
//!   alive, and is read-only. It also holds a **read lock on the storage** until the last clone
//!   of the array drops — the lock is the snapshot: candle's in-place writers (`Var::set`,
//!   `slice_set`, `const_set`, `zero_set`, `scatter_set`, `inplace_op1/2/3`), which take the
//!   storage's write lock and may replace its buffer, wait until then instead of changing or
//!   freeing memory under the array (like rust-numpy's borrow checking, but blocking). On the
//!   thread that holds the array such a call would wait forever: drop the array first, or take
//!   an owned copy (`Candle::to_host_with(.., CopyPolicy::Always)`, which holds no lock). Every
//!   view and export of one storage shares one lock, so taking another never queues behind a
//!   waiting writer (which would wait for the first: a deadlock).
//! - CUDA tensors (feature `cuda`) come out with one device→host copy of only the span the
//!   view covers, into pinned memory, after the work queued on the device's stream is done.
//! - Into candle: a uniquely owned row-major buffer moves in without a copy; anything else is
//!   copied once (candle cannot wrap foreign memory). Dtypes candle lacks (bool, i8, u16, u64,
//!   complex) are refused with a hint to cast.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use candle_core::{CpuStorage, DType as CandleDType, Device as CandleDevice, Storage, Tensor};
use ferry_core::raw_dtypes as raw;
use ferry_core::{
    Backend, CopyPolicy, CopyReason, DType, DlpackTensor, Error, HostArray, Result, StorageLayout,
    record_copy,
};

mod cuda;

/// The backend name used in errors.
pub const BACKEND: &str = "candle";

/// The ferry dtype of a candle dtype (candle's fp8/fp6/fp4 types are raw DLPack descriptors).
pub fn ferry_dtype(dtype: CandleDType) -> DType {
    match dtype {
        CandleDType::U8 => DType::U8,
        CandleDType::U32 => DType::U32,
        CandleDType::I16 => DType::I16,
        CandleDType::I32 => DType::I32,
        CandleDType::I64 => DType::I64,
        CandleDType::BF16 => DType::BF16,
        CandleDType::F16 => DType::F16,
        CandleDType::F32 => DType::F32,
        CandleDType::F64 => DType::F64,
        CandleDType::F8E4M3 => DType::Raw(raw::FLOAT8_E4M3FN),
        CandleDType::F8E8M0 => DType::Raw(raw::FLOAT8_E8M0FNU),
        CandleDType::F6E2M3 => DType::Raw(raw::FLOAT6_E2M3FN),
        CandleDType::F6E3M2 => DType::Raw(raw::FLOAT6_E3M2FN),
        CandleDType::F4 => DType::Raw(raw::FLOAT4_E2M1FN),
        // A dtype added to candle after 0.11: carried as opaque bytes of its size.
        other => DType::from_desc(ferry_core::DTypeDesc {
            code: ferry_core::DTypeDesc::OPAQUE_HANDLE,
            bits: (other.size_in_bytes() * 8).clamp(8, 255) as u8,
            lanes: 1,
        }),
    }
}

/// The candle dtype for a ferry dtype, or [`Error::UnsupportedDtype`] naming what to do.
pub fn candle_dtype(dtype: DType) -> Result<CandleDType> {
    let unsupported = |hint: &'static str| Error::UnsupportedDtype {
        backend: BACKEND,
        dtype,
        hint: hint.into(),
    };
    Ok(match dtype {
        DType::U8 => CandleDType::U8,
        DType::U32 => CandleDType::U32,
        DType::I16 => CandleDType::I16,
        DType::I32 => CandleDType::I32,
        DType::I64 => CandleDType::I64,
        DType::BF16 => CandleDType::BF16,
        DType::F16 => CandleDType::F16,
        DType::F32 => CandleDType::F32,
        DType::F64 => CandleDType::F64,
        DType::Raw(d) if d == raw::FLOAT8_E4M3FN => CandleDType::F8E4M3,
        DType::Raw(d) if d == raw::FLOAT8_E8M0FNU => CandleDType::F8E8M0,
        DType::Raw(d) if d == raw::FLOAT6_E2M3FN => CandleDType::F6E2M3,
        DType::Raw(d) if d == raw::FLOAT6_E3M2FN => CandleDType::F6E3M2,
        DType::Raw(d) if d == raw::FLOAT4_E2M1FN => CandleDType::F4,
        DType::Bool => return Err(unsupported("cast to u8 first (array.cast::<u8>())")),
        DType::I8 => return Err(unsupported("cast to i16 or u8 first")),
        DType::U16 => return Err(unsupported("cast to u32 first")),
        DType::U64 => return Err(unsupported("cast to i64 or u32 first")),
        DType::C64 | DType::C128 => {
            return Err(unsupported(
                "split it into real and imaginary parts and cast each to f32 or f64",
            ));
        }
        _ => return Err(unsupported("candle cannot hold this dtype")),
    })
}

fn candle_err(e: candle_core::Error) -> Error {
    Error::backend(BACKEND, e)
}

/// The dtypes candle tensors hold, in ferry's terms (its fp8/fp6/fp4 types travel as raw
/// descriptors and are not listed).
pub const DTYPES: &[DType] = {
    use DType::*;
    &[U8, U32, I16, I32, I64, BF16, F16, F32, F64]
};

/// The Candle backend (`candle_core::Tensor` on a `candle_core::Device`), for code that is
/// generic over [`Backend`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Candle;

impl Backend for Candle {
    const NAME: &'static str = BACKEND;
    const DTYPES: &'static [DType] = DTYPES;
    type Tensor = Tensor;
    type Device = CandleDevice;

    fn cpu() -> CandleDevice {
        CandleDevice::Cpu
    }

    fn view(tensor: &Tensor) -> Result<HostArray> {
        view(tensor)
    }

    fn to_host(tensor: &Tensor) -> Result<HostArray> {
        to_host(tensor)
    }

    fn to_dlpack(tensor: &Tensor) -> Result<DlpackTensor> {
        to_dlpack(tensor)
    }

    fn from_host(array: &HostArray, device: &CandleDevice) -> Result<Tensor> {
        from_host(array, device)
    }

    fn into_tensor(array: HostArray, device: &CandleDevice) -> Result<Tensor> {
        into_tensor(array, device)
    }

    fn from_dlpack(tensor: DlpackTensor, device: &CandleDevice) -> Result<Tensor> {
        from_dlpack(tensor, device)
    }
}

/// A zero-copy, read-only host array over a CPU tensor's storage; a device tensor is refused
/// with [`Error::NeedsCopy`] (use [`to_host`]).
pub fn view(tensor: &Tensor) -> Result<HostArray> {
    if tensor.device().is_cpu() {
        return cpu_view(tensor);
    }
    let layout = tensor.layout();
    Err(Error::NeedsCopy {
        reason: CopyReason::DeviceTransfer,
        shape: layout.dims().to_vec(),
        strides: layout.stride().iter().map(|&s| s as isize).collect(),
        dtype: ferry_dtype(tensor.dtype()),
    })
}

/// A host array over the tensor's data: zero-copy on CPU (see [`view`]), one copy of the
/// viewed span from a GPU.
pub fn to_host(tensor: &Tensor) -> Result<HostArray> {
    if tensor.device().is_cpu() {
        return cpu_view(tensor);
    }
    let lock = lock_storage(tensor);
    match lock.storage() {
        Storage::Cuda(cuda) => cuda::to_host(cuda, tensor.layout(), ferry_dtype(tensor.dtype())),
        Storage::Cpu(_) => cpu_view(tensor),
        Storage::Metal(_) => Err(Error::NotCompiled {
            capability: "reading candle Metal tensors",
            hint: "move the tensor to the CPU with to_device(&Device::Cpu) first",
        }),
    }
}

/// The read lock ferry holds on a candle storage, with the tensor that keeps the lock (and the
/// storage) alive. candle writes a storage in place, or replaces its buffer, only under the
/// write lock (`Var::set`, `slice_set`, `inplace_op*`, ...), so while this guard lives the bytes
/// neither change nor move. One lock serves every view and export of a storage ([`lock_storage`]).
pub(crate) struct StorageReadLock {
    /// Dropped first (in `Drop`), while `tensor` still keeps the lock alive.
    guard: ManuallyDrop<candle_core::StorageRef<'static>>,
    #[expect(dead_code, reason = "held to keep the lock, and the storage, alive")]
    tensor: Tensor,
}

/// The read locks ferry holds, by storage ([`storage_key`]), for [`lock_storage`] to share.
static HELD: Mutex<Vec<(usize, Weak<StorageReadLock>)>> = Mutex::new(Vec::new());
/// How many [`StorageReadLock`]s are alive: none means this thread holds none, so it may wait
/// for candle's lock like any reader.
static LIVE: AtomicUsize = AtomicUsize::new(0);

impl StorageReadLock {
    /// Takes a read lock on `tensor`'s storage, held until the result drops. parking_lot's
    /// `read` is fair: it waits behind a writer that is waiting — call it only where this
    /// thread holds no lock on the storage ([`lock_storage`]).
    fn new(tensor: &Tensor) -> StorageReadLock {
        let tensor = tensor.clone();
        let (storage, _) = tensor.storage_and_layout();
        // SAFETY: the lock lives in candle's heap `Arc<RwLock<Storage>>`, which `tensor` keeps
        // alive and never moves (moving the `Tensor` handle moves only a pointer to it); the
        // guard is stored beside `tensor`, and `Drop` releases it before `tensor` goes, so the
        // extended lifetime never outlives the lock.
        let guard: candle_core::StorageRef<'static> = unsafe { std::mem::transmute(storage) };
        LIVE.fetch_add(1, Ordering::AcqRel);
        StorageReadLock {
            guard: ManuallyDrop::new(guard),
            tensor,
        }
    }

    /// The locked storage.
    pub(crate) fn storage(&self) -> &Storage {
        &self.guard
    }

    /// The locked storage's key: see [`storage_key`].
    fn key(&self) -> usize {
        match self.storage() {
            Storage::Cpu(cpu) => std::ptr::from_ref(cpu).addr(),
            Storage::Cuda(cuda) => std::ptr::from_ref(cuda).addr(),
            Storage::Metal(metal) => std::ptr::from_ref(metal).addr(),
        }
    }
}

impl Drop for StorageReadLock {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here, before `tensor` (fields drop after this body).
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where `tensor`'s storage lives, read under candle's own reentrant read lock (a custom op's
/// `read_recursive`, which never queues behind a waiting writer when this thread holds the lock
/// already): the address of the `CpuStorage`/`CudaStorage` inside the storage's `RwLock`, the
/// same for every tensor sharing the storage for as long as it lives.
fn storage_key(tensor: &Tensor) -> Option<usize> {
    /// An op that only records the address of the storage it is handed, then stops with an
    /// error (no result storage is made).
    struct Key(AtomicUsize);
    impl candle_core::CustomOp1 for Key {
        fn name(&self) -> &'static str {
            "ferry-storage-key"
        }
        fn cpu_fwd(
            &self,
            storage: &CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(CpuStorage, candle_core::Shape)> {
            self.0
                .store(std::ptr::from_ref(storage).addr(), Ordering::Relaxed);
            Err(candle_core::Error::NotCompiledWithCudaSupport)
        }
        fn cuda_fwd(
            &self,
            storage: &candle_core::CudaStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            self.0
                .store(std::ptr::from_ref(storage).addr(), Ordering::Relaxed);
            Err(candle_core::Error::NotCompiledWithCudaSupport)
        }
    }
    let key = Key(AtomicUsize::new(0));
    let _ = tensor.apply_op1_no_bwd(&key);
    Some(key.0.into_inner()).filter(|&k| k != 0)
}

/// ferry's read lock on `tensor`'s storage: the one a live view or export of that storage holds
/// already, else a new one. Asking candle's fair lock again while this thread holds one (a second
/// view) would queue behind a writer waiting for the first: both would wait forever.
pub(crate) fn lock_storage(tensor: &Tensor) -> Arc<StorageReadLock> {
    let held = |held: &mut Vec<(usize, Weak<StorageReadLock>)>, key| {
        held.iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, lock)| lock.upgrade())
    };
    // No lock alive: this thread holds none, and may wait for candle's. (A lock made on another
    // thread after this check is not this thread's to wait for.)
    if LIVE.load(Ordering::Acquire) > 0
        && let Some(key) = storage_key(tensor)
        && let Some(lock) = held(&mut lock_held(), key)
    {
        // Alive (it was upgraded), so it still holds this very storage: its tensor keeps it.
        return lock;
    }
    let lock = Arc::new(StorageReadLock::new(tensor));
    let mut all = lock_held();
    all.retain(|(_, lock)| lock.strong_count() > 0);
    all.push((lock.key(), Arc::downgrade(&lock)));
    lock
}

/// The registry of held locks (a panic while it was locked left nothing half-written).
fn lock_held() -> std::sync::MutexGuard<'static, Vec<(usize, Weak<StorageReadLock>)>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A storage read-locked by ferry, as host arrays and exports hold it.
pub(crate) struct LockedStorage(pub(crate) Arc<StorageReadLock>);

// SAFETY: `bytes` reads the buffer of the CPU storage this value holds a read lock on (and
// keeps alive through the lock's tensor): the same Vec every call, as candle cannot replace a
// storage's buffer or write into it without the write lock, which waits until the last holder
// of the lock drops it. Any other storage reports no bytes.
unsafe impl ferry_core::Storage for LockedStorage {
    fn bytes(&self) -> (*const u8, usize) {
        let Storage::Cpu(cpu) = self.0.storage() else {
            return (std::ptr::null(), 0);
        };
        match cpu {
            CpuStorage::U8(v) => bytes(v),
            CpuStorage::U32(v) => bytes(v),
            CpuStorage::I16(v) => bytes(v),
            CpuStorage::I32(v) => bytes(v),
            CpuStorage::I64(v) => bytes(v),
            CpuStorage::BF16(v) => bytes(v),
            CpuStorage::F16(v) => bytes(v),
            CpuStorage::F32(v) => bytes(v),
            CpuStorage::F64(v) => bytes(v),
            CpuStorage::F8E4M3(v) => bytes(v),
            CpuStorage::F6E2M3(v)
            | CpuStorage::F6E3M2(v)
            | CpuStorage::F4(v)
            | CpuStorage::F8E8M0(v) => bytes(v),
        }
    }
}

/// Describes a CPU tensor's storage as a read-only host array that keeps the tensor alive and
/// its storage read-locked (see [`StorageReadLock`]). candle does not check that a layout fits
/// its storage (`from_raw_buffer` takes any byte count for fp4/fp6); `from_storage` does, in
/// bits.
fn cpu_view(tensor: &Tensor) -> Result<HostArray> {
    let lock = lock_storage(tensor);
    if !matches!(lock.storage(), Storage::Cpu(_)) {
        return Err(Error::backend_message(
            BACKEND,
            "a CPU tensor's storage is not a CPU storage",
        ));
    }
    let layout = storage_layout(ferry_dtype(tensor.dtype()), tensor.layout());
    HostArray::from_storage(LockedStorage(lock), layout)
}

/// A candle layout (dims, strides and start offset in elements) in ferry's terms.
pub(crate) fn storage_layout(dtype: DType, layout: &candle_core::Layout) -> StorageLayout {
    StorageLayout {
        dtype,
        shape: layout.dims().to_vec(),
        strides: layout.stride().iter().map(|&s| s as isize).collect(),
        offset: layout.start_offset(),
    }
}

fn bytes<T>(v: &[T]) -> (*const u8, usize) {
    (v.as_ptr().cast(), std::mem::size_of_val(v))
}

/// A candle tensor on `device` with the array's values. Copies once (candle cannot wrap foreign
/// memory); see [`into_tensor`] to move an owned buffer in without copying.
pub fn from_host(array: &HostArray, device: &CandleDevice) -> Result<Tensor> {
    into_tensor(array.clone(), device)
}

/// Like [`from_host`], but moves the buffer into candle without copying when the array is the
/// only handle to an owned row-major buffer and the target is the CPU.
pub fn into_tensor(array: HostArray, device: &CandleDevice) -> Result<Tensor> {
    let dtype = candle_dtype(array.dtype())?;
    let shape = array.shape().to_vec();
    if !array.dtype().is_typed() {
        // Raw (fp8/fp6/fp4) data: copy the bytes into candle's byte-backed storage.
        let bytes = array.to_contiguous(CopyPolicy::IfNeeded)?;
        let raw = bytes.as_bytes().expect("contiguous").to_vec();
        record_copy(raw.len() as u64, CopyReason::FrameworkStorage);
        let storage = match dtype {
            CandleDType::F6E2M3 => CpuStorage::F6E2M3(raw),
            CandleDType::F6E3M2 => CpuStorage::F6E3M2(raw),
            CandleDType::F4 => CpuStorage::F4(raw),
            CandleDType::F8E8M0 => CpuStorage::F8E8M0(raw),
            CandleDType::F8E4M3 => {
                CpuStorage::F8E4M3(raw.into_iter().map(float8::F8E4M3::from_bits).collect())
            }
            _ => unreachable!("typed dtypes take the path below"),
        };
        let t = Tensor::from_storage(
            Storage::Cpu(storage),
            shape,
            candle_core::op::BackpropOp::none(),
            false,
        );
        return t.to_device(device).map_err(candle_err);
    }
    match array.dtype() {
        DType::U8 => typed_into_tensor::<u8>(array, shape, device),
        DType::U32 => typed_into_tensor::<u32>(array, shape, device),
        DType::I16 => typed_into_tensor::<i16>(array, shape, device),
        DType::I32 => typed_into_tensor::<i32>(array, shape, device),
        DType::I64 => typed_into_tensor::<i64>(array, shape, device),
        DType::BF16 => typed_into_tensor::<ferry_core::half::bf16>(array, shape, device),
        DType::F16 => typed_into_tensor::<ferry_core::half::f16>(array, shape, device),
        DType::F32 => typed_into_tensor::<f32>(array, shape, device),
        DType::F64 => typed_into_tensor::<f64>(array, shape, device),
        other => unreachable!("candle_dtype accepted {other}"),
    }
}

fn typed_into_tensor<T: ferry_core::Element + candle_core::WithDType>(
    array: HostArray,
    shape: Vec<usize>,
    device: &CandleDevice,
) -> Result<Tensor> {
    // Moves the buffer when this array owns it alone in row-major order; copies (and records
    // the copy) otherwise. Either way candle takes the Vec as its storage, which must hold
    // exactly the elements: an owned array over part of its buffer (a slice moved in with
    // `from_array`) has its elements moved to the front and the rest cut off, in place.
    let array = into_standard::<T>(array)?;
    let len = array.len();
    let (mut vec, offset) = array.into_raw_vec_and_offset();
    let offset = offset.unwrap_or(0);
    if offset != 0 || vec.len() != len {
        vec.copy_within(offset..offset + len, 0);
        vec.truncate(len);
    }
    Tensor::from_vec(vec, shape, device).map_err(candle_err)
}

/// The array's elements as an owned row-major ndarray: [`HostArray::into_array`], which moves
/// the buffer when it can, and copies otherwise (always in standard layout, so its elements are
/// `len` consecutive values from the buffer's offset).
fn into_standard<T: ferry_core::Element>(
    array: HostArray,
) -> Result<ferry_core::ndarray::ArrayD<T>> {
    let array = array.into_array::<T>()?;
    if array.is_standard_layout() {
        return Ok(array);
    }
    Ok(array.as_standard_layout().into_owned())
}

/// Exports a candle tensor over DLPack: CPU tensors share candle's storage (read-only), CUDA
/// tensors (feature `cuda`) share the device buffer.
pub fn to_dlpack(tensor: &Tensor) -> Result<DlpackTensor> {
    if tensor.device().is_cpu() {
        return Ok(to_host(tensor)?.into_dlpack());
    }
    let lock = lock_storage(tensor);
    match lock.storage() {
        Storage::Cpu(_) => Ok(to_host(tensor)?.into_dlpack()),
        Storage::Cuda(_) => cuda::to_dlpack(lock, tensor.layout(), ferry_dtype(tensor.dtype())),
        Storage::Metal(_) => Err(Error::NotCompiled {
            capability: "exporting candle Metal tensors",
            hint: "move the tensor to the CPU with to_device(&Device::Cpu) first",
        }),
    }
}

/// Imports a DLPack tensor into candle on `device`: host memory is copied once (moved when it
/// is ferry's own uniquely owned buffer); CUDA memory is copied device-to-device (feature
/// `cuda`).
pub fn from_dlpack(tensor: DlpackTensor, device: &CandleDevice) -> Result<Tensor> {
    if tensor.device().is_host_readable() {
        return into_tensor(tensor.into_host()?, device);
    }
    cuda::from_dlpack(tensor, device)
}
