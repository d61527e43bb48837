//! CUDA paths of the candle adapter: one device→host copy of just the viewed span into pinned
//! memory, DLPack export of device buffers, and device-to-device import. Without feature `cuda`
//! the same functions return [`Error::NotCompiled`], so the public API does not change.

use candle_core::{CudaStorage, Device as CandleDevice, Layout, Tensor};
use ferry_core::{DType, DlpackTensor, Error, HostArray, Result};

use crate::StorageReadLock;

#[cfg(not(feature = "cuda"))]
mod imp {
    use std::sync::Arc;

    use super::*;

    const NOT_COMPILED: Error = Error::NotCompiled {
        capability: "candle CUDA tensors",
        hint: "build ferry with feature `cuda` (needs nvcc to build, a CUDA machine to run)",
    };

    pub(crate) fn to_host(
        _storage: &CudaStorage,
        _layout: &Layout,
        _dtype: DType,
    ) -> Result<HostArray> {
        Err(NOT_COMPILED)
    }

    pub(crate) fn to_dlpack(
        _lock: Arc<StorageReadLock>,
        _layout: &Layout,
        _dtype: DType,
    ) -> Result<DlpackTensor> {
        Err(NOT_COMPILED)
    }

    pub(crate) fn from_dlpack(tensor: DlpackTensor, _device: &CandleDevice) -> Result<Tensor> {
        if tensor.device().is_cuda() {
            return Err(NOT_COMPILED);
        }
        Err(Error::NotHostMemory {
            device: tensor.device(),
            shape: tensor.shape().to_vec(),
            dtype: tensor.dtype(),
        })
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use std::sync::Arc;

    use candle_core::Storage;
    use candle_core::backend::{BackendDevice, BackendStorage};
    use candle_core::cuda_backend::CudaStorageSlice;
    use candle_core::cuda_backend::cudarc::driver::{
        CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, HostSlice,
        PinnedHostSlice,
    };
    use ferry_core::{CopyReason, Device, MemoryKind, record_copy};

    use super::*;
    use crate::{BACKEND, candle_dtype, storage_layout};

    fn cuda_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::backend(BACKEND, e)
    }

    /// Calls `$f::<T>(slice)` for the typed CUDA slice behind a candle CUDA storage.
    macro_rules! with_slice {
        ($storage:expr, $s:ident => $body:expr) => {
            match &$storage.slice {
                CudaStorageSlice::U8($s) => $body,
                CudaStorageSlice::U32($s) => $body,
                CudaStorageSlice::I16($s) => $body,
                CudaStorageSlice::I32($s) => $body,
                CudaStorageSlice::I64($s) => $body,
                CudaStorageSlice::BF16($s) => $body,
                CudaStorageSlice::F16($s) => $body,
                CudaStorageSlice::F32($s) => $body,
                CudaStorageSlice::F64($s) => $body,
                CudaStorageSlice::F8E4M3($s) => $body,
                CudaStorageSlice::F6E2M3($s)
                | CudaStorageSlice::F6E3M2($s)
                | CudaStorageSlice::F4($s)
                | CudaStorageSlice::F8E8M0($s) => $body,
            }
        };
    }

    /// Bytes in a candle CUDA storage's buffer.
    fn storage_len(storage: &CudaStorage) -> usize {
        with_slice!(storage, s => s.num_bytes())
    }

    /// Waits for all work queued in `stream`'s context, on every stream and thread.
    ///
    /// Candle's default CUDA device queues its kernels on the *calling thread's* per-thread
    /// default stream (`CU_STREAM_PER_THREAD`), so a tensor computed on one thread and read
    /// on another is not ordered by any one stream; a foreign producer (PyTorch, another
    /// device value of candle's) may use yet another stream of the same primary context.
    fn wait_for_context(stream: &CudaStream) -> Result<()> {
        stream.context().synchronize().map_err(cuda_err)
    }

    /// Makes `ctx` current on the calling thread, before CUDA memory is freed there: the
    /// driver frees on a stream (or the per-thread stream) only with a current context, and
    /// a DLPack deleter or a host array may be dropped on a thread that never used CUDA.
    fn bind_for_drop(ctx: &CudaContext) {
        // An error is recorded in the context by cudarc and surfaces at its next checked call;
        // a drop cannot report it.
        let _ = ctx.bind_to_thread();
    }

    /// Copies bytes `[lo, hi)` of `slice` into fresh pinned host memory on `stream`, after all
    /// work queued in its context (see [`wait_for_context`]), and waits for the copy.
    fn copy_span<T: DeviceRepr>(
        slice: &CudaSlice<T>,
        stream: &Arc<CudaStream>,
        lo: usize,
        hi: usize,
    ) -> Result<PinnedHostSlice<T>> {
        let size = size_of::<T>().max(1);
        let (first, end) = (lo / size, hi.div_ceil(size));
        // SAFETY: the memory is written by the copy below before anyone reads it.
        let mut pinned = unsafe {
            stream
                .context()
                .alloc_pinned_with_flags::<T>(end - first, 0)
        }
        .map_err(cuda_err)?;
        wait_for_context(stream)?;
        stream
            .memcpy_dtoh(&slice.slice(first..end), &mut pinned)
            .map_err(cuda_err)?;
        stream.synchronize().map_err(cuda_err)?;
        Ok(pinned)
    }

    /// A pinned host buffer holding a copied span, as ferry storage the host array owns alone.
    struct PinnedSpan<T> {
        /// Made current on the thread that drops this, before the buffer is freed.
        ctx: Arc<CudaContext>,
        /// Keeps the pinned allocation alive.
        _pinned: PinnedHostSlice<T>,
        /// Its first byte, taken with write permission (as an address: the buffer is `Send`).
        addr: usize,
        /// Its length in bytes.
        len: usize,
    }

    impl<T: DeviceRepr> PinnedSpan<T> {
        fn new(mut pinned: PinnedHostSlice<T>, stream: &CudaStream) -> PinnedSpan<T> {
            let len = pinned.len() * size_of::<T>();
            let addr = {
                // SAFETY: the stream was synchronised after the copy into `pinned`, so using it
                // is safe; the returned guard only records an event.
                let (slice, _guard) = unsafe { pinned.stream_synced_mut_slice(stream) };
                slice.as_mut_ptr() as usize
            };
            PinnedSpan {
                ctx: stream.context().clone(),
                _pinned: pinned,
                addr,
                len,
            }
        }
    }

    impl<T> Drop for PinnedSpan<T> {
        fn drop(&mut self) {
            // Runs before the fields drop, so `_pinned` is freed with its context current.
            bind_for_drop(&self.ctx);
        }
    }

    /// What a CUDA DLPack export keeps alive: the read-locked tensor, whose device buffer is
    /// freed (when this is the last reference) with its context current on the dropping thread.
    struct CudaOwner {
        ctx: Arc<CudaContext>,
        _lock: Arc<StorageReadLock>,
    }

    impl Drop for CudaOwner {
        fn drop(&mut self) {
            // Runs before `_lock` drops the tensor.
            bind_for_drop(&self.ctx);
        }
    }

    // SAFETY: `addr..addr + len` is the pinned allocation `_pinned` owns alone and keeps alive;
    // nothing else holds it (it was allocated for this copy), so it is unchanged unless the
    // array owning this value writes it. Pinned memory is host memory the CPU reads.
    unsafe impl<T: Send + Sync + 'static> ferry_core::Storage for PinnedSpan<T>
    where
        PinnedHostSlice<T>: Send + Sync,
    {
        fn bytes(&self) -> (*const u8, usize) {
            (self.addr as *const u8, self.len)
        }

        fn memory(&self) -> MemoryKind {
            MemoryKind::CudaHost
        }
    }

    // SAFETY: as above; `addr` was taken from `as_mut_ptr` of the owned pinned slice.
    unsafe impl<T: Send + Sync + 'static> ferry_core::StorageMut for PinnedSpan<T>
    where
        PinnedHostSlice<T>: Send + Sync,
    {
        fn bytes_mut(&mut self) -> (*mut u8, usize) {
            (self.addr as *mut u8, self.len)
        }
    }

    pub(crate) fn to_host(
        storage: &CudaStorage,
        layout: &Layout,
        dtype: DType,
    ) -> Result<HostArray> {
        let view = storage_layout(dtype, layout);
        let range = view.byte_range(storage_len(storage))?;
        if range.is_empty() {
            return HostArray::from_storage_mut(Vec::<u8>::new(), view.rebase(0)?);
        }
        let stream = storage.device.cuda_stream();
        let host = with_slice!(storage, s => {
            // Whole elements of the slice's type, from the one holding the span's first byte.
            let first = range.start / size_of_val_of(s) * size_of_val_of(s);
            let pinned = copy_span(s, &stream, first, range.end)?;
            HostArray::from_storage_mut(PinnedSpan::new(pinned, &stream), view.rebase(first)?)
        })?;
        let record = record_copy(range.len() as u64, CopyReason::DeviceTransfer);
        Ok(host.with_copy(record))
    }

    /// Bytes of one element of a CUDA slice's element type.
    fn size_of_val_of<T>(_: &CudaSlice<T>) -> usize {
        size_of::<T>().max(1)
    }

    /// Exports the locked CUDA storage: the export holds the read lock (and the tensor) until
    /// the consumer's deleter runs, so candle cannot write or replace the buffer under it.
    pub(crate) fn to_dlpack(
        lock: Arc<StorageReadLock>,
        layout: &Layout,
        dtype: DType,
    ) -> Result<DlpackTensor> {
        let Storage::Cuda(storage) = lock.storage() else {
            return Err(Error::backend_message(
                BACKEND,
                "the tensor is not on a CUDA device",
            ));
        };
        let first = storage_layout(dtype, layout).locate(storage_len(storage))?;
        let stream = storage.device.cuda_stream();
        let ordinal = match storage.device().location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id as i32,
            _ => 0,
        };
        let base = with_slice!(storage, s => {
            let (ptr, _guard) = s.device_ptr(&stream);
            ptr
        });
        // Consumers may read on any stream: finish the work queued for the tensor first, on
        // whichever thread's stream it was queued.
        wait_for_context(&stream)?;
        // Inside the buffer: `locate` checked the layout against the storage's bytes.
        let data = (base as usize + first) as *mut std::ffi::c_void;
        let parts = ferry_core::dlpack::ExportParts {
            data,
            dtype,
            shape: layout.dims().to_vec(),
            strides: layout.stride().iter().map(|&s| s as isize).collect(),
            device: Device::cuda(ordinal),
            flags: ferry_core::dlpack::DlpackFlags::READ_ONLY,
        };
        let owner = CudaOwner {
            ctx: stream.context().clone(),
            _lock: lock,
        };
        // SAFETY: the device buffer belongs to the tensor's storage, kept alive, read-locked and
        // so unchanged by the lock in `owner`; the layout was checked to lie inside it.
        unsafe { ferry_core::dlpack::export_owner(parts, ferry_core::dlpack::owner(owner)) }
    }

    pub(crate) fn from_dlpack(tensor: DlpackTensor, device: &CandleDevice) -> Result<Tensor> {
        let source = tensor.device();
        let CandleDevice::Cuda(cuda) = device else {
            return Err(Error::DeviceMismatch {
                expected: Device::CPU,
                found: source,
                hint: "import it onto the candle CUDA device it lives on, then call to_device(&Device::Cpu)",
            });
        };
        let target = match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id as i32,
            _ => -1,
        };
        if !source.is_cuda() || source.device_id != target {
            return Err(Error::DeviceMismatch {
                expected: Device::cuda(target),
                found: source,
                hint: "import it onto the candle device of that ordinal (Device::new_cuda(ordinal)), then move it with to_device",
            });
        }
        let dtype = candle_dtype(tensor.dtype())?;
        if !ferry_core::layout::is_row_major(tensor.shape(), tensor.strides()) {
            return Err(Error::UnsupportedLayout {
                shape: tensor.shape().to_vec(),
                strides: tensor.strides().to_vec(),
                dtype: tensor.dtype(),
                reason: "candle imports CUDA DLPack tensors device-to-device only when row-major; make it contiguous in the producer",
            });
        }
        let bytes = ferry_core::layout::packed_bytes(tensor.len(), tensor.dtype())
            .expect("a validated DLPack tensor's packed size fits isize");
        let stream = cuda.cuda_stream();
        let src = tensor.data_ptr() as u64;
        let slice = match dtype {
            candle_core::DType::U8 => CudaStorageSlice::U8(copy_in(&stream, src, bytes)?),
            candle_core::DType::U32 => CudaStorageSlice::U32(copy_in(&stream, src, bytes)?),
            candle_core::DType::I16 => CudaStorageSlice::I16(copy_in(&stream, src, bytes)?),
            candle_core::DType::I32 => CudaStorageSlice::I32(copy_in(&stream, src, bytes)?),
            candle_core::DType::I64 => CudaStorageSlice::I64(copy_in(&stream, src, bytes)?),
            candle_core::DType::BF16 => CudaStorageSlice::BF16(copy_in(&stream, src, bytes)?),
            candle_core::DType::F16 => CudaStorageSlice::F16(copy_in(&stream, src, bytes)?),
            candle_core::DType::F32 => CudaStorageSlice::F32(copy_in(&stream, src, bytes)?),
            candle_core::DType::F64 => CudaStorageSlice::F64(copy_in(&stream, src, bytes)?),
            candle_core::DType::F8E4M3 => CudaStorageSlice::F8E4M3(copy_in(&stream, src, bytes)?),
            candle_core::DType::F6E2M3 => CudaStorageSlice::F6E2M3(copy_in(&stream, src, bytes)?),
            candle_core::DType::F6E3M2 => CudaStorageSlice::F6E3M2(copy_in(&stream, src, bytes)?),
            candle_core::DType::F4 => CudaStorageSlice::F4(copy_in(&stream, src, bytes)?),
            candle_core::DType::F8E8M0 => CudaStorageSlice::F8E8M0(copy_in(&stream, src, bytes)?),
            other => {
                return Err(Error::UnsupportedDtype {
                    backend: BACKEND,
                    dtype: crate::ferry_dtype(other),
                    hint: "this candle dtype has no CUDA import".into(),
                });
            }
        };
        record_copy(bytes as u64, CopyReason::FrameworkStorage);
        let shape = tensor.shape().to_vec();
        // The copy has finished (copy_in synchronises): the producer may be released now.
        drop(tensor);
        let storage = CudaStorage {
            slice,
            device: cuda.clone(),
        };
        Ok(Tensor::from_storage(
            candle_core::Storage::Cuda(storage),
            shape,
            candle_core::op::BackpropOp::none(),
            false,
        ))
    }

    /// A new device buffer of `bytes` bytes (as elements of `T`) holding a copy of the device
    /// memory at `src`, copied on `stream` and waited for.
    fn copy_in<T: DeviceRepr>(
        stream: &Arc<CudaStream>,
        src: u64,
        bytes: usize,
    ) -> Result<CudaSlice<T>> {
        let n = bytes.div_ceil(size_of::<T>().max(1));
        // SAFETY: every byte is written by the copy below before the slice is used.
        let mut dst = unsafe { stream.alloc::<T>(n) }.map_err(cuda_err)?;
        // The producer's work may be queued on any stream of this process's context (DLPack in
        // Rust carries no stream): wait for all of it before reading its memory.
        wait_for_context(stream)?;
        {
            let (dst_ptr, _guard) = dst.device_ptr_mut(stream);
            // SAFETY: `src` is device memory of the producer, at least `bytes` long and alive
            // until the caller drops its DlpackTensor (after this function synchronised); `dst`
            // was just allocated with room for `bytes`.
            unsafe {
                candle_core::cuda_backend::cudarc::driver::result::memcpy_dtod_async(
                    dst_ptr,
                    src,
                    bytes,
                    stream.cu_stream(),
                )
            }
            .map_err(cuda_err)?;
        }
        stream.synchronize().map_err(cuda_err)?;
        Ok(dst)
    }
}

pub(crate) use imp::{from_dlpack, to_dlpack, to_host};
