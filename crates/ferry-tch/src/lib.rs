//! `ferry-tch`: `tch::Tensor` (libtorch) ⇄ [`HostArray`] and ⇄ DLPack, on tch 0.22.0 with
//! PyTorch 2.9.0.
//!
//! - To host, CPU: zero-copy, with the tensor's real strides and storage offset, and a
//!   **snapshot**: the array owns a reference on the copy-on-write context of the tensor's
//!   storage (made copy-on-write by libtorch's `lazy_clone_storage`, what `torch._lazy_clone`
//!   uses), as a lazy clone of the storage would. The two share the bytes until the
//!   tensor (or anything sharing its storage) is written, `resize_`d or exported: libtorch then
//!   copies the bytes for the writer, once, and the array keeps its memory and its values. So
//!   `fill_`, `copy_`, `set_`, `resize_` and lazy clones of the source are all allowed while the
//!   array lives, and the array is read-only. Only a tensor that is its storage's one handle is
//!   shared so (a fresh result, a view whose base is gone): libtorch makes and materialises
//!   copy-on-write storages without a lock, and another handle (a slice of a live tensor, a
//!   shallow clone sent to another thread, a Python alias) could write it meanwhile. A storage
//!   other tensors share, and memory libtorch did not allocate itself (`from_blob`, a DLPack
//!   import), is copied instead: one copy, recorded ([`CopyReason::Snapshot`]), and a zero-copy
//!   [`view`] is refused. Like
//!   `.numpy(force=True)`: a tensor that requires grad is read without its graph, and
//!   conjugate/negative bits are resolved (one copy, recorded). Undefined, sparse and
//!   storage-less tensors are typed errors.
//! - No silent casts: every libtorch dtype maps to its own ferry dtype (fp8 as raw descriptors);
//!   quantized tensors are refused.
//! - From host: [`from_host`] copies into memory libtorch allocates (the caller's array is
//!   still read by ferry, so libtorch, which has no read-only tensors, never writes it);
//!   [`into_tensor`] moves an array ferry owns alone ([`HostArray::is_writable`]) into libtorch
//!   without copying, through libtorch's own `at::fromDLPackVersioned` (a C++ shim).
//! - From DLPack: a producer's tensor that its consumer may write goes to libtorch as it is
//!   (DLPack's contract); a read-only one, one with negative strides (which libtorch forbids)
//!   or a legacy one (which cannot say READ_ONLY) is moved in only when ferry holds it alone,
//!   else copied once.
//! - To DLPack: the same snapshot, exported READ_ONLY (a copy made for the export is the
//!   consumer's own: IS_COPIED, writable).
//! - CUDA tensors (feature `cuda`): one copy of the viewed span into pinned memory, after the
//!   device's queued work; exports wait for it too. libtorch's CUDA half (`libtorch_cuda.so`)
//!   is dropped by linkers that link `--as-needed` (tch-rs #980): [`load_cuda`] loads it, and
//!   ferry calls it before its own CUDA paths.

use std::ffi::{CStr, c_char, c_void};
use std::mem::MaybeUninit;

use ferry_core::dlpack_rs::ffi::DLManagedTensorVersioned;
use ferry_core::raw_dtypes as raw;
use ferry_core::{
    Backend, CopyReason, DType, DlpackTensor, Error, HostArray, RawDlpack, Result,
    StorageLayoutRef, record_copy,
};
use tch::{Device, Tensor};
use torch_sys::C_tensor;

/// The backend name used in errors.
pub const BACKEND: &str = "tch";

// Every shim function catches all C++ exceptions and reports them through `err`.
unsafe extern "C" {
    fn ferry_tch_from_dlpack_versioned(
        m: *mut DLManagedTensorVersioned,
        released: *mut i32,
        err: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn ferry_tch_storage_offset(t: *mut C_tensor, err: *mut *mut c_char) -> i64;
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn ferry_tch_pinned_span(
        t: *mut C_tensor,
        offset: i64,
        len: i64,
        err: *mut *mut c_char,
    ) -> *mut C_tensor;
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn ferry_tch_device_synchronize(device: i32, err: *mut *mut c_char) -> i32;
    fn ferry_tch_describe(
        t: *mut C_tensor,
        info: *mut TensorInfo,
        sizes: *mut i64,
        strides: *mut i64,
        cap: i64,
        snapshot: i32,
        snapshot_out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> i64;
    fn ferry_tch_snapshot_free(snapshot: *mut c_void);
}

/// An error message from the shim, freed after copying.
fn shim_error(err: *mut c_char, what: &str) -> Error {
    let message = if err.is_null() {
        format!("{what} failed")
    } else {
        // SAFETY: the shim wrote a NUL-terminated, malloc'ed string; it is freed right after.
        let m = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: allocated with malloc by the shim, freed once here.
        unsafe { libc::free(err.cast()) };
        format!("{what}: {m}")
    };
    Error::backend_message(BACKEND, message)
}

fn tch_err(e: tch::TchError) -> Error {
    Error::backend(BACKEND, e)
}

fn ptr(t: &Tensor) -> *mut C_tensor {
    t.as_ptr().cast_mut()
}

/// The ferry dtype of a c10 `ScalarType` code; `None` for quantized and bit-packed types.
pub fn ferry_dtype(scalar_type: i32) -> Option<DType> {
    let raw8 = |d: ferry_core::RawDType| Some(DType::Raw(d));
    match scalar_type {
        0 => Some(DType::U8),
        1 => Some(DType::I8),
        2 => Some(DType::I16),
        3 => Some(DType::I32),
        4 => Some(DType::I64),
        5 => Some(DType::F16),
        6 => Some(DType::F32),
        7 => Some(DType::F64),
        8 => raw8(raw::COMPLEX32),
        9 => Some(DType::C64),
        10 => Some(DType::C128),
        11 => Some(DType::Bool),
        15 => Some(DType::BF16),
        23 => raw8(raw::FLOAT8_E5M2),
        24 => raw8(raw::FLOAT8_E4M3FN),
        25 => raw8(raw::FLOAT8_E5M2FNUZ),
        26 => raw8(raw::FLOAT8_E4M3FNUZ),
        27 => Some(DType::U16),
        28 => Some(DType::U32),
        29 => Some(DType::U64),
        44 => raw8(raw::FLOAT8_E8M0FNU),
        _ => None,
    }
}

/// Why a tensor of c10 scalar type `code` (one [`ferry_dtype`] does not map) has no host
/// layout: quantized (QInt8, QUInt8, QInt32, QUInt4x2, QUInt2x4), or bit-packed.
fn unreadable(code: i32, shape: &[usize]) -> Error {
    match code {
        12 | 13 | 14 | 16 | 17 => Error::Quantized {
            backend: BACKEND,
            shape: shape.to_vec(),
            hint: "call dequantize() first",
        },
        _ => Error::backend_message(
            BACKEND,
            format!(
                "the tensor of shape {shape:?} has c10 scalar type {code} (a bit-packed or \
                 sub-byte type), which has no host layout ferry can describe; convert it with \
                 to_kind first"
            ),
        ),
    }
}

/// The c10 scalar type of a tensor, as its raw code (tch's `Kind` has no unsigned wide types).
pub fn scalar_type(t: &Tensor) -> i32 {
    // SAFETY: `t` is a live tensor; at_scalar_type only reads its dtype.
    unsafe { torch_sys::at_scalar_type(ptr(t)) }
}

fn tch_kind(dtype: DType) -> Result<tch::Kind> {
    use tch::Kind;
    Ok(match dtype {
        DType::U8 => Kind::Uint8,
        DType::I8 => Kind::Int8,
        DType::I16 => Kind::Int16,
        DType::I32 => Kind::Int,
        DType::I64 => Kind::Int64,
        DType::F16 => Kind::Half,
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::C64 => Kind::ComplexFloat,
        DType::C128 => Kind::ComplexDouble,
        DType::Bool => Kind::Bool,
        DType::BF16 => Kind::BFloat16,
        _ => {
            return Err(Error::UnsupportedDtype {
                backend: BACKEND,
                dtype,
                hint: "tch 0.22 has no Kind for it; cast to a signed or floating dtype first"
                    .into(),
            });
        }
    })
}

/// What `ferry_tch_describe` reports (layout shared with the shim's `FerryTchInfo`).
#[repr(C)]
struct TensorInfo {
    data: *mut std::ffi::c_void,
    scalar_type: i32,
    device_type: i32,
    device_index: i32,
    flags: i32,
    storage_bytes: i64,
    storage_offset: i64,
    storage_data: *mut std::ffi::c_void,
}

impl TensorInfo {
    /// The storage offset in elements and the storage's size in bytes, as `usize`s.
    fn storage_span(&self) -> Result<(usize, usize)> {
        match (
            usize::try_from(self.storage_offset),
            usize::try_from(self.storage_bytes),
        ) {
            (Ok(offset), Ok(len)) => Ok((offset, len)),
            _ => Err(Error::backend_message(
                BACKEND,
                format!(
                    "libtorch reported storage offset {} and storage size {} bytes",
                    self.storage_offset, self.storage_bytes
                ),
            )),
        }
    }
}

const REQUIRES_GRAD: i32 = 1;
const IS_CONJ: i32 = 2;
const IS_NEG: i32 = 4;
/// The snapshot is a copy of the tensor, held by ferry alone (`shim.cpp`).
const COPIED: i32 = 8;
/// Axes described in one shim call; more fall back to tch's own `size()`/`stride()`.
const DESCRIBE_CAP: usize = 16;

/// What [`describe`] takes of the tensor besides its layout (the shim's `snapshot` bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Snapshot {
    /// A copy-on-write share of a plain CPU tensor's storage, where libtorch can make one.
    Cow = 1,
    /// The clone, or else a contiguous copy of the tensor.
    CowOrCopy = 1 | 2,
    /// The clone or a copy, of a plain tensor on any device (an export).
    AnyDevice = 1 | 2 | 4,
}

/// A tensor's layout facts from one shim call, and, when asked for, the snapshot of its values
/// that a host array or an export owns (see `shim.cpp`).
struct Described {
    info: TensorInfo,
    axes: Axes,
    storage: Option<StorageHandle>,
}

/// A tensor's shape and strides: in place for up to [`DESCRIBE_CAP`] axes (as the shim reports
/// them), so a view allocates nothing for them; from tch's own `size()`/`stride()` beyond.
#[expect(
    clippy::large_enum_variant,
    reason = "the inline variant is the point: a view's axes on its stack, not on the heap"
)]
enum Axes {
    Inline {
        ndim: usize,
        shape: [usize; DESCRIBE_CAP],
        strides: [isize; DESCRIBE_CAP],
    },
    Heap {
        shape: Vec<usize>,
        strides: Vec<isize>,
    },
}

impl Axes {
    fn shape(&self) -> &[usize] {
        match self {
            Axes::Inline { ndim, shape, .. } => &shape[..*ndim],
            Axes::Heap { shape, .. } => shape,
        }
    }

    fn strides(&self) -> &[isize] {
        match self {
            Axes::Inline { ndim, strides, .. } => &strides[..*ndim],
            Axes::Heap { strides, .. } => strides,
        }
    }
}

/// A snapshot of a tensor's values (`shim.cpp`): a reference of ferry's own on the
/// copy-on-write context of the tensor's storage (or of a copy of the tensor that nothing else
/// reaches). Its bytes keep their values and their address while the handle lives.
struct StorageHandle(std::ptr::NonNull<c_void>);

// SAFETY: the handle is one reference on libtorch's atomically reference-counted copy-on-write
// context; ferry only drops it, which libtorch allows from any thread (every storage sharing the
// bytes holds such a reference and drops it wherever it is freed), and nothing is reachable
// through `&StorageHandle`.
unsafe impl Send for StorageHandle {}
// SAFETY: as above: no method reads or writes through a shared reference.
unsafe impl Sync for StorageHandle {}

impl Drop for StorageHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from ferry_tch_describe and is released exactly once, here.
        unsafe { ferry_tch_snapshot_free(self.0.as_ptr()) }
    }
}

fn describe(t: &Tensor, snapshot: Snapshot) -> Result<Described> {
    let mut storage = std::ptr::null_mut();
    let mut info = TensorInfo {
        data: std::ptr::null_mut(),
        scalar_type: -1,
        device_type: 0,
        device_index: -1,
        flags: 0,
        storage_bytes: 0,
        storage_offset: 0,
        storage_data: std::ptr::null_mut(),
    };
    let (mut sizes, mut strides) = ([0i64; DESCRIBE_CAP], [0i64; DESCRIBE_CAP]);
    let mut err = std::ptr::null_mut();
    // SAFETY: `t` is a live tensor; the shim writes `info`, at most DESCRIBE_CAP entries,
    // `storage` (a fresh snapshot reference of our own, or NULL), and `err` only when it returns
    // -1.
    let ndim = unsafe {
        ferry_tch_describe(
            ptr(t),
            &mut info,
            sizes.as_mut_ptr(),
            strides.as_mut_ptr(),
            DESCRIBE_CAP as i64,
            snapshot as i32,
            &mut storage,
            &mut err,
        )
    };
    let storage = std::ptr::NonNull::new(storage).map(StorageHandle);
    let Ok(ndim) = usize::try_from(ndim) else {
        return Err(shim_error(err, "describing the tensor"));
    };
    let axes = if ndim <= DESCRIBE_CAP {
        Axes::Inline {
            ndim,
            shape: sizes.map(|d| d as usize),
            strides: strides.map(|s| s as isize),
        }
    } else {
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        // A copy made for the snapshot is contiguous, whatever the tensor's own strides.
        let strides = if info.flags & COPIED != 0 {
            ferry_core::layout::row_major_strides(&shape).ok_or_else(|| {
                Error::backend_message(BACKEND, format!("libtorch reported shape {shape:?}"))
            })?
        } else {
            t.stride().iter().map(|&s| s as isize).collect()
        };
        Axes::Heap { shape, strides }
    };
    Ok(Described {
        info,
        axes,
        storage,
    })
}

/// The dtypes ferry creates libtorch tensors of (`Backend::DTYPES`). tch 0.22 has no `Kind`
/// for u16, u32 and u64, so those are read from libtorch but not written to it; quantized and
/// bit-packed tensors are refused.
pub const DTYPES: &[DType] = {
    use DType::*;
    &[Bool, U8, I8, I16, I32, I64, F16, BF16, F32, F64, C64, C128]
};

/// The tch backend (`tch::Tensor` on a `tch::Device`), for code that is generic over
/// [`Backend`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Tch;

impl Backend for Tch {
    type Tensor = Tensor;
    type Device = Device;
    const NAME: &'static str = BACKEND;
    const DTYPES: &'static [DType] = DTYPES;

    fn view(tensor: &Tensor) -> Result<HostArray> {
        read(tensor, false)
    }

    fn to_host(tensor: &Tensor) -> Result<HostArray> {
        read(tensor, true)
    }

    fn to_dlpack(tensor: &Tensor) -> Result<DlpackTensor> {
        to_dlpack(tensor)
    }

    fn from_host(array: &HostArray, device: &Device) -> Result<Tensor> {
        from_host(array, *device)
    }

    fn into_tensor(array: HostArray, device: &Device) -> Result<Tensor> {
        into_tensor(array, *device)
    }

    fn from_dlpack(tensor: DlpackTensor, device: &Device) -> Result<Tensor> {
        from_dlpack(tensor, *device)
    }

    fn cpu() -> Device {
        Device::Cpu
    }
}

/// A zero-copy, read-only host array over a snapshot of a plain CPU tensor that is its
/// storage's only handle (see the crate's notes); tensors that need a copy (on a GPU, with
/// conjugate or negative bits, over a storage other tensors share, or over memory libtorch did
/// not allocate, which cannot be shared copy-on-write) are refused with [`Error::NeedsCopy`].
pub fn view(tensor: &Tensor) -> Result<HostArray> {
    read(tensor, false)
}

/// A host array over a tch tensor: zero-copy on CPU where [`view`] is, else one copy: from a
/// GPU, to resolve conjugate and negative bits (like `.numpy(force=True)`), or of a storage that
/// cannot be shared copy-on-write (shared with other tensors, or not libtorch's own memory).
pub fn to_host(tensor: &Tensor) -> Result<HostArray> {
    read(tensor, true)
}

fn read(tensor: &Tensor, may_copy: bool) -> Result<HostArray> {
    let snapshot = if may_copy {
        Snapshot::CowOrCopy
    } else {
        Snapshot::Cow
    };
    let Described {
        info,
        axes,
        storage,
    } = describe(tensor, snapshot)?;
    let dtype =
        ferry_dtype(info.scalar_type).ok_or_else(|| unreadable(info.scalar_type, axes.shape()))?;
    if let Some(storage) = storage {
        // The common case: a plain CPU tensor (detached or not: a view needs no autograd).
        return cpu_view(storage, &info, dtype, &axes);
    }
    let needs_copy = |reason| Error::NeedsCopy {
        reason,
        shape: axes.shape().to_vec(),
        strides: axes.strides().to_vec(),
        dtype,
    };
    let on_cpu = info.device_type == 0; // c10::DeviceType::CPU
    if on_cpu && info.flags & (IS_CONJ | IS_NEG) == 0 {
        // Only a view was asked for, of memory libtorch cannot share copy-on-write.
        return Err(needs_copy(CopyReason::Snapshot));
    }
    // Like `.numpy(force=True)`: detach (shares memory), resolve conj/neg bits (copies).
    let mut t = if info.flags & REQUIRES_GRAD != 0 {
        tensor.detach()
    } else {
        tensor.shallow_clone()
    };
    let mut resolved = None;
    if info.flags & (IS_CONJ | IS_NEG) != 0 && !may_copy {
        return Err(needs_copy(CopyReason::Cast));
    }
    if info.flags & IS_CONJ != 0 {
        t = t.f_resolve_conj().map_err(tch_err)?;
        resolved = Some(CopyReason::Cast);
    }
    if info.flags & IS_NEG != 0 {
        t = t.f_resolve_neg().map_err(tch_err)?;
        resolved = Some(CopyReason::Cast);
    }
    if t.device() != Device::Cpu {
        if !may_copy {
            return Err(needs_copy(CopyReason::DeviceTransfer));
        }
        return cuda::to_host(&t, dtype);
    }
    // A tensor made just now by the resolution: its snapshot shares it copy-on-write.
    let Described {
        info,
        axes,
        storage,
    } = describe(&t, Snapshot::CowOrCopy)?;
    let storage = storage.ok_or_else(|| {
        Error::backend_message(
            BACKEND,
            "a resolved CPU tensor still has conjugate or negative bits",
        )
    })?;
    let host = cpu_view(storage, &info, dtype, &axes)?;
    Ok(match resolved {
        Some(reason) => {
            let bytes = host.nbytes() as u64;
            host.with_copy(record_copy(bytes, reason))
        }
        None => host,
    })
}

/// A snapshot of a libtorch CPU storage as ferry storage: ferry's own reference to it and its
/// byte range.
struct TchStorage {
    _handle: StorageHandle,
    /// Address of the storage's first byte.
    base: usize,
    /// Bytes in the storage.
    len: usize,
}

impl TchStorage {
    /// # Safety
    ///
    /// `base..base + len` are the bytes `handle` is a snapshot of (as `ferry_tch_describe`
    /// reports them), in host memory.
    unsafe fn new(handle: StorageHandle, base: *mut c_void, len: usize) -> TchStorage {
        TchStorage {
            _handle: handle,
            base: base as usize,
            len,
        }
    }
}

// SAFETY: `_handle` is ferry's own reference on the copy-on-write context that owns the bytes
// `base..base + len` (constructor contract), libtorch's heap memory, not inside this value. The
// context frees them only with its last reference, and libtorch never writes bytes a
// copy-on-write context owns: any writer to a storage sharing them — an in-place op, `set_`,
// `resize_`, `share_memory_`, a DLPack export — asks for a mutable data pointer, which first
// gives the writer a copy of its own (or, as the last reference, the bytes themselves, which it
// cannot be while this handle lives); ferry reads through `data()`, which never does. For a
// copy made for this handle alone, nothing else reaches the context at all. So nothing writes
// the bytes while the handle lives.
unsafe impl ferry_core::Storage for TchStorage {
    fn bytes(&self) -> (*const u8, usize) {
        (self.base as *const u8, self.len)
    }
}

// SAFETY: as above; constructed as `StorageMut` only for a copy made for the handle alone
// (`COPIED`), whose context nothing else references, and whose bytes libtorch's CPU allocator
// allocated writable for the copy.
unsafe impl ferry_core::StorageMut for TchStorage {
    fn bytes_mut(&mut self) -> (*mut u8, usize) {
        (self.base as *mut u8, self.len)
    }
}

/// Describes a CPU tensor's snapshot as a host array owning `storage`, ferry's own reference
/// to it: read-only over bytes shared copy-on-write, ferry's own (`Exclusive`, one recorded
/// copy) over a copy.
fn cpu_view(
    storage: StorageHandle,
    info: &TensorInfo,
    dtype: DType,
    axes: &Axes,
) -> Result<HostArray> {
    let (offset, len) = info.storage_span()?;
    let layout = StorageLayoutRef {
        dtype,
        shape: axes.shape(),
        strides: axes.strides(),
        offset,
    };
    // SAFETY: `storage_data` and `storage_bytes` describe the CPU storage `storage` refers to:
    // the shim read them from the StorageImpl it handed over.
    let storage = unsafe { TchStorage::new(storage, info.storage_data, len) };
    if info.flags & COPIED == 0 {
        return HostArray::from_storage_ref(storage, layout);
    }
    let bytes = len as u64;
    let layout = ferry_core::StorageLayout {
        dtype,
        shape: layout.shape.to_vec(),
        strides: layout.strides.to_vec(),
        offset,
    };
    Ok(HostArray::from_storage_mut(storage, layout)?
        .with_copy(record_copy(bytes, CopyReason::Snapshot)))
}

/// The storage offset of a tensor, in elements (tch does not expose it).
pub fn storage_offset(t: &Tensor) -> Result<i64> {
    let mut err = std::ptr::null_mut();
    // SAFETY: `t` is a live tensor; the shim only reads it and writes `err` on failure.
    let offset = unsafe { ferry_tch_storage_offset(ptr(t), &mut err) };
    if offset < 0 {
        return Err(shim_error(err, "reading the storage offset"));
    }
    Ok(offset)
}

/// A tch tensor with the array's values on `device`: one copy, into memory libtorch allocates
/// (so its views share it copy-on-write). ferry still reads `array`, and libtorch has no
/// read-only tensors, so the array's memory is never handed to libtorch; see [`into_tensor`]
/// to move an array ferry owns alone without copying.
pub fn from_host(array: &HostArray, device: Device) -> Result<Tensor> {
    let kind = tch_kind(array.dtype())?;
    let shape: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
    let t = Tensor::f_empty(&shape, (kind, Device::Cpu)).map_err(tch_err)?;
    let bytes = array.nbytes();
    if bytes > 0 {
        // SAFETY: `t` was made just now, contiguous, with room for exactly the array's elements
        // of its dtype (`bytes` bytes: `tch_kind` maps each dtype to one of the same size);
        // nothing else references it, and its bytes are written here before anything reads them.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(t.data_ptr().cast::<MaybeUninit<u8>>(), bytes)
        };
        array.write_row_major(dst, CopyReason::FrameworkStorage)?;
    } else if array.dtype() == DType::Bool {
        array.view::<bool>()?;
    }
    to_device(t, device, bytes)
}

/// Like [`from_host`], moving the array into libtorch without copying when ferry holds it alone
/// ([`HostArray::is_writable`]: memory of ferry's own that no clone, export or keep-alive holds)
/// with non-negative strides (which libtorch requires); libtorch then owns it, and frees it
/// with the tensor. Anything else is copied, as by [`from_host`].
pub fn into_tensor(array: HostArray, device: Device) -> Result<Tensor> {
    tch_kind(array.dtype())?;
    if !(array.is_writable() && array.strides().iter().all(|&s| s >= 0)) {
        return from_host(&array, device);
    }
    if array.dtype() == DType::Bool {
        array.view::<bool>()?; // libtorch must never see a bool byte other than 0 or 1
    }
    let bytes = array.nbytes();
    // Nothing else holds the memory, so the export lets its consumer write it.
    let t = import_dlpack(array.into_dlpack())?;
    to_device(t, device, bytes)
}

/// `t`, a CPU tensor of `bytes` bytes, on `device` (one recorded copy for another device).
fn to_device(t: Tensor, device: Device, bytes: usize) -> Result<Tensor> {
    if device == Device::Cpu {
        return Ok(t);
    }
    if device.is_cuda() {
        load_cuda()?;
    }
    let moved = t.f_to_device(device).map_err(tch_err)?;
    record_copy(bytes as u64, CopyReason::DeviceTransfer);
    Ok(moved)
}

/// Hands a DLPack tensor to libtorch's `at::fromDLPackVersioned` (zero-copy on its device).
/// The caller has checked that libtorch may write the memory (not read-only, and nothing ferry
/// reads) and that the strides are non-negative.
fn import_dlpack(tensor: DlpackTensor) -> Result<Tensor> {
    let device = tensor.device();
    if device != ferry_core::Device::CPU && device.is_host_readable() {
        // libtorch knows host memory only as kDLCPU ("Unsupported device_type: 3" for pinned
        // memory, 13 for managed): the CPU reads such memory where it is, so it goes as kDLCPU,
        // the label PyTorch gives its own pinned tensors. The array is handed on as it came.
        return import_dlpack(tensor.into_host()?.as_cpu_memory().into_dlpack());
    }
    if device.is_cuda() {
        load_cuda()?;
    }
    let RawDlpack::Versioned(raw) = tensor.into_raw() else {
        return Err(Error::backend_message(
            BACKEND,
            "a legacy DLPack tensor reached libtorch's import (ferry imports those as host arrays first)",
        ));
    };
    let mut err = std::ptr::null_mut();
    let mut released = 0;
    // SAFETY: `raw` is an owned versioned tensor; the shim hands libtorch its own deleter, which
    // releases `raw` exactly once, and reports in `released` whether that already happened on
    // a failed import.
    let t = unsafe { ferry_tch_from_dlpack_versioned(raw, &mut released, &mut err) };
    if t.is_null() {
        if released == 0 {
            // SAFETY: libtorch failed before it took `raw`: still ours, released once here.
            drop(unsafe { DlpackTensor::from_versioned(raw) });
        }
        return Err(shim_error(err, "at::fromDLPackVersioned"));
    }
    // SAFETY: the shim returned a fresh `new at::Tensor`, which tch frees on drop.
    Ok(unsafe { Tensor::from_ptr(t) })
}

/// Exports a tch tensor over DLPack: its snapshot (see the crate's notes), READ_ONLY, so neither
/// the caller's later writes nor the consumer can change what the other sees. A snapshot that
/// had to be a copy is the consumer's own (IS_COPIED, writable). CUDA tensors are exported on
/// their device once the device's queued work is done.
pub fn to_dlpack(tensor: &Tensor) -> Result<DlpackTensor> {
    let Described {
        info,
        axes,
        storage,
    } = describe(tensor, Snapshot::AnyDevice)?;
    let dtype =
        ferry_dtype(info.scalar_type).ok_or_else(|| unreadable(info.scalar_type, axes.shape()))?;
    let Some(storage) = storage else {
        // Conjugate or negative bits: resolved on the tensor's device (one copy), then exported.
        let mut t = tensor.shallow_clone();
        if info.flags & IS_CONJ != 0 {
            t = t.f_resolve_conj().map_err(tch_err)?;
        }
        if info.flags & IS_NEG != 0 {
            t = t.f_resolve_neg().map_err(tch_err)?;
        }
        if info.flags & (IS_CONJ | IS_NEG) == 0 {
            return Err(Error::backend_message(
                BACKEND,
                "libtorch gave no snapshot of a tensor without conjugate or negative bits",
            ));
        }
        return to_dlpack(&t);
    };
    if info.device_type == 0 {
        return Ok(cpu_view(storage, &info, dtype, &axes)?.into_dlpack());
    }
    cuda::export(storage, &info, dtype, &axes)
}

/// Imports a DLPack tensor into libtorch (zero-copy; device tensors stay on their device). A
/// host tensor that its producer lets its consumer write (no READ_ONLY) goes to libtorch as it
/// is, as `torch.from_dlpack` does; a read-only one, one with negative strides (which libtorch
/// forbids), a legacy one (which cannot say READ_ONLY), one with a `byte_offset` (which libtorch
/// 2.9 ignores), a bool one (whose bytes are checked to be 0 or 1) or one ferry exported (memory a ferry array may still read) becomes a host array
/// first and goes in through [`into_tensor`]: moved when ferry holds it alone, else copied
/// once. A device tensor
/// that cannot go as it is is refused.
pub fn from_dlpack(tensor: DlpackTensor, device: Device) -> Result<Tensor> {
    let negative = tensor.strides().iter().any(|&s| s < 0);
    let legacy = !tensor.is_versioned();
    if tensor.device().is_host_readable() {
        // bool goes through the host array too, whose checked view makes sure libtorch never
        // sees a byte other than 0 or 1 (it is then copied: the producer may still write it).
        // ferry's own exports, too: memory a ferry array may still read (a counted export is
        // writable), which `into_tensor` hands over only when the array comes back alone.
        // And a tensor with a `byte_offset`, which libtorch 2.9's `fromDLPack` ignores (it
        // would read and write from `data`, before the tensor).
        if tensor.is_read_only()
            || negative
            || legacy
            || tensor.byte_offset() != 0
            || tensor.dtype() == DType::Bool
            || tensor.made_by_ferry()
        {
            return into_tensor(tensor.into_host()?, device);
        }
        // The producer lets its consumer write: libtorch shares the memory, as
        // `torch.from_dlpack` does.
        let t = import_dlpack(tensor)?;
        return if device == Device::Cpu {
            Ok(t)
        } else {
            t.f_to_device(device).map_err(tch_err)
        };
    }
    if negative || legacy || tensor.byte_offset() != 0 {
        return Err(Error::UnsupportedLayout {
            shape: tensor.shape().to_vec(),
            strides: tensor.strides().to_vec(),
            dtype: tensor.dtype(),
            reason: "libtorch takes device tensors only as versioned DLPack with non-negative strides and no byte_offset (libtorch 2.9 ignores it); re-export the tensor with its producer first",
        });
    }
    let read_only = tensor.is_read_only();
    // In ferry's dtype: tch's `Kind` cannot name every dtype libtorch holds (uint16/32/64).
    let bytes = ferry_core::layout::packed_bytes(tensor.len(), tensor.dtype())
        .expect("a validated DLPack tensor's packed size fits isize");
    let mut t = import_dlpack(tensor)?;
    if read_only {
        // libtorch has no read-only tensors: hand out a copy (on the same device), never the
        // producer's memory.
        let copy = t.f_empty_like().map_err(tch_err)?;
        let mut copy = copy;
        copy.f_copy_(&t).map_err(tch_err)?;
        record_copy(bytes as u64, CopyReason::Forced);
        t = copy;
    }
    if t.device() == device {
        Ok(t)
    } else {
        t.f_to_device(device).map_err(tch_err)
    }
}

/// Loads libtorch's CUDA library, `libtorch_cuda.so`, into the process once (`RTLD_GLOBAL`),
/// from the libtorch this crate was built against or else from the loader's search path.
///
/// Nothing in a Rust binary calls into that library directly, so linkers that link
/// `--as-needed` (the default on most distributions) drop it, and libtorch then has no CUDA
/// kernels: "Could not run 'aten::empty_strided' with arguments from the 'CUDA' backend"
/// (tch-rs #980). ferry calls this before its own CUDA paths; call it before you make CUDA
/// tensors with tch yourself (or link with `-Wl,--no-as-needed -ltorch_cuda`). Without
/// feature `cuda` it returns [`Error::NotCompiled`].
pub fn load_cuda() -> Result<()> {
    cuda::load()
}

mod cuda {
    //! CUDA → host: one copy of the span the view covers into pinned memory; loading
    //! libtorch's CUDA library.
    use super::*;

    #[cfg(feature = "cuda")]
    pub(super) fn load() -> Result<()> {
        use std::ffi::CString;
        use std::sync::OnceLock;

        static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
        let loaded = LOADED.get_or_init(|| {
            let mut tried = Vec::new();
            for path in [
                concat!(env!("FERRY_TCH_LIBTORCH_LIB"), "/libtorch_cuda.so"),
                "libtorch_cuda.so",
            ] {
                let c_path = CString::new(path).expect("no NUL in a library path");
                // SAFETY: a NUL-terminated path. The library's initialisers register its CUDA
                // kernels and hooks with libtorch_cpu, which this crate links and so is loaded;
                // the handle is never closed (libtorch cannot be unloaded).
                let handle =
                    unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
                if !handle.is_null() {
                    return Ok(());
                }
                // SAFETY: dlerror returns NULL or this thread's NUL-terminated message, read
                // before any other dl* call.
                let why = unsafe { libc::dlerror() };
                tried.push(if why.is_null() {
                    format!("{path}: not found")
                } else {
                    // SAFETY: as above.
                    unsafe { CStr::from_ptr(why) }
                        .to_string_lossy()
                        .into_owned()
                });
            }
            Err(tried.join("; "))
        });
        loaded.clone().map_err(|why| {
            Error::backend_message(
                BACKEND,
                format!(
                    "libtorch_cuda.so could not be loaded ({why}): ferry's `cuda` feature needs a CUDA build of libtorch (LIBTORCH) and its CUDA libraries on the loader path"
                ),
            )
        })
    }

    #[cfg(not(feature = "cuda"))]
    pub(super) fn load() -> Result<()> {
        Err(Error::NotCompiled {
            capability: "tch CUDA tensors",
            hint: "build ferry with feature `cuda` (and a CUDA build of libtorch)",
        })
    }

    /// A pinned host tensor holding a copied span, as storage a host array owns alone (tch
    /// tensors are `Send` but not `Sync`, hence the mutex).
    #[cfg(feature = "cuda")]
    struct PinnedSpan {
        _tensor: std::sync::Mutex<Tensor>,
        /// Address of the buffer's first byte.
        addr: usize,
        /// Bytes in the buffer.
        len: usize,
    }

    #[cfg(feature = "cuda")]
    impl PinnedSpan {
        /// The `len` bytes of `host`, a contiguous pinned tensor made for one copy, owned by
        /// the result alone (its dtype may be one tch's `Kind` cannot name).
        fn new(host: Tensor, len: usize) -> PinnedSpan {
            PinnedSpan {
                addr: host.data_ptr() as usize,
                len,
                _tensor: std::sync::Mutex::new(host),
            }
        }
    }

    // SAFETY: `addr..addr + len` is the buffer of a pinned tensor made for this copy and held
    // only by `_tensor`, which keeps it alive and in place (nothing can resize a tensor nobody
    // else reaches). Pinned memory is host memory the CPU reads.
    #[cfg(feature = "cuda")]
    unsafe impl ferry_core::Storage for PinnedSpan {
        fn bytes(&self) -> (*const u8, usize) {
            (self.addr as *const u8, self.len)
        }

        fn memory(&self) -> ferry_core::MemoryKind {
            ferry_core::MemoryKind::CudaHost
        }
    }

    // SAFETY: as above; nobody else holds the tensor, and its `data_ptr` is a mutable pointer.
    #[cfg(feature = "cuda")]
    unsafe impl ferry_core::StorageMut for PinnedSpan {
        fn bytes_mut(&mut self) -> (*mut u8, usize) {
            (self.addr as *mut u8, self.len)
        }
    }

    #[cfg(feature = "cuda")]
    pub(super) fn to_host(t: &Tensor, dtype: DType) -> Result<HostArray> {
        load()?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let strides: Vec<isize> = t.stride().iter().map(|&s| s as isize).collect();
        // The span: from the lowest to the highest element the view reaches (checked to fit isize
        // in bytes, so the arithmetic below cannot overflow).
        let range = ferry_core::layout::check_layout(dtype, &shape, &strides)?;
        let mut layout = ferry_core::StorageLayout {
            dtype,
            shape,
            strides,
            offset: 0,
        };
        let Some((lo, hi)) = range else {
            return HostArray::from_storage_mut(Vec::<u8>::new(), layout);
        };
        let size = dtype.size_in_bytes().unwrap_or(1);
        let len = (hi - lo + 1) as i64;
        let offset = storage_offset(t)?;
        let mut err = std::ptr::null_mut();
        // The shim names the dtype itself (tch's `Kind` has no uint16/32/64 or e8m0), copies
        // into pinned memory directly and waits for the device first.
        // SAFETY: `t` is a live tensor; the shim catches every C++ exception.
        let host = unsafe { ferry_tch_pinned_span(ptr(t), offset + lo as i64, len, &mut err) };
        if host.is_null() {
            return Err(shim_error(err, "copying the span to pinned memory"));
        }
        // SAFETY: a new tensor the shim allocated for us alone.
        let host = unsafe { Tensor::from_ptr(host) };
        let bytes = len as usize * size;
        let record = record_copy(bytes as u64, CopyReason::DeviceTransfer);
        // Element [0, .., 0] is -lo elements into the copied span.
        layout.offset = lo.unsigned_abs();
        let pinned = PinnedSpan::new(host, bytes);
        Ok(HostArray::from_storage_mut(pinned, layout)?.with_copy(record))
    }

    /// Exports the snapshot `storage` of a device tensor (`info`, `axes`) on its device, once
    /// the device's queued work is done: READ_ONLY over bytes shared copy-on-write, the consumer's
    /// own (IS_COPIED) over a copy.
    #[cfg(feature = "cuda")]
    pub(super) fn export(
        storage: StorageHandle,
        info: &TensorInfo,
        dtype: DType,
        axes: &Axes,
    ) -> Result<DlpackTensor> {
        use ferry_core::dlpack::DlpackFlags;
        load()?;
        if info.device_type != 1 {
            return Err(Error::backend_message(
                BACKEND,
                format!(
                    "ferry exports tch tensors on the CPU and CUDA devices, not on c10 device type {}; move the tensor to one first",
                    info.device_type
                ),
            ));
        }
        let mut err = std::ptr::null_mut();
        // SAFETY: the shim only synchronises the device and writes `err` on failure.
        if unsafe { ferry_tch_device_synchronize(info.device_index, &mut err) } != 0 {
            return Err(shim_error(err, "waiting for the CUDA device"));
        }
        let (offset, len) = info.storage_span()?;
        let layout = ferry_core::StorageLayout {
            dtype,
            shape: axes.shape().to_vec(),
            strides: axes.strides().to_vec(),
            offset,
        };
        // Checks the layout against the storage's bytes; the address is the device's.
        let first = layout.locate(len)?;
        let copied = info.flags & COPIED != 0;
        let flags = if copied {
            DlpackFlags::IS_COPIED
        } else {
            DlpackFlags::READ_ONLY
        };
        let parts = ferry_core::dlpack::ExportParts {
            data: (info.storage_data as usize).wrapping_add(first) as *mut c_void,
            device: ferry_core::Device {
                device_type: ferry_core::Device::CUDA_TYPE,
                device_id: info.device_index,
            },
            shape: layout.shape,
            strides: layout.strides,
            dtype,
            flags,
        };
        if copied {
            record_copy(len as u64, CopyReason::Snapshot);
        }
        // SAFETY: every element the layout reaches lies in the snapshot's device memory (checked
        // by `locate` against its size), which the owner, ferry's own reference to it, keeps
        // allocated and unchanged (see `TchStorage`) until the consumer's deleter drops it.
        unsafe { ferry_core::dlpack::export_owner(parts, ferry_core::dlpack::owner(storage)) }
    }

    #[cfg(not(feature = "cuda"))]
    pub(super) fn export(
        _storage: StorageHandle,
        _info: &TensorInfo,
        _dtype: DType,
        _axes: &Axes,
    ) -> Result<DlpackTensor> {
        Err(Error::NotCompiled {
            capability: "tch CUDA tensors",
            hint: "build ferry with feature `cuda` and link libtorch_cuda (see the README)",
        })
    }

    #[cfg(not(feature = "cuda"))]
    pub(super) fn to_host(t: &Tensor, _dtype: DType) -> Result<HostArray> {
        let _ = t;
        Err(Error::NotCompiled {
            capability: "tch CUDA tensors",
            hint: "build ferry with feature `cuda` and link libtorch_cuda (see the README)",
        })
    }
}
