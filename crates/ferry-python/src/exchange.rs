//! DLPack 1.3's C exchange API: the static `DLPackExchangeAPI` table that `ferry.HostArray`
//! publishes as the type attribute `__dlpack_c_exchange_api__` (a PyCapsule named
//! `"dlpack_exchange_api"`), so a consumer that knows the table (tvm-ffi, CuTe DSL) exchanges
//! arrays through C calls instead of the `__dlpack__` method call.
//!
//! The table's functions work on host arrays and know nothing of the class: they are generic
//! over [`Exchanged`], which the class implements (`object.rs`), and the class's module makes
//! its table with [`Table::of`], a `static` whose functions are instantiated for the class
//! (no lookup at run time).
//!
//! Layout and semantics follow the DLPack 1.3 header (`DLPackExchangeAPIHeader`,
//! `DLPackExchangeAPI`): every function returns 0 on success and -1 on failure. The `*_py_object`
//! functions and `current_work_stream` are called with the GIL held and set a Python exception on
//! failure; the allocator touches no Python and reports through the caller's `SetError`. No
//! function lets a Rust panic cross the C boundary. ferry's arrays live in host memory, so
//! nothing here synchronises a stream.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::OnceLock;

use ferry_core::dlpack_rs::ffi::{DLDevice, DLManagedTensorVersioned, DLPackVersion, DLTensor};
use ferry_core::layout::{element_count, packed_bytes};
use ferry_core::{DType, DTypeDesc, Device, DlpackTensor, HostArray, RawDlpack, StorageLayout};
use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::capsule::LiveExport;
use crate::error::to_py_err;
use crate::{deferred, gate, lease, raw};

/// The capsule name DLPack 1.3 gives the table.
const CAPSULE_NAME: &CStr = c"dlpack_exchange_api";

/// `void (*SetError)(void* error_ctx, const char* kind, const char* message)`.
type SetError = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char);

/// DLPack 1.3's `DLPackExchangeAPIHeader`.
#[repr(C)]
#[derive(Debug)]
pub struct DLPackExchangeAPIHeader {
    /// The DLPack version of the table (1.3).
    pub version: DLPackVersion,
    /// An older table for consumers of an older major version; ferry has none (NULL).
    pub prev_api: *mut DLPackExchangeAPIHeader,
}

/// DLPack 1.3's `DLPackExchangeAPI`: the header, then five function pointers in the header's
/// order.
#[repr(C)]
#[derive(Debug)]
pub struct DLPackExchangeAPI {
    /// Version and chain to older tables.
    pub header: DLPackExchangeAPIHeader,
    /// `DLPackManagedTensorAllocator`: a new managed tensor shaped like a prototype.
    pub managed_tensor_allocator: Option<
        unsafe extern "C" fn(
            *mut DLTensor,
            *mut *mut DLManagedTensorVersioned,
            *mut c_void,
            Option<SetError>,
        ) -> c_int,
    >,
    /// `DLPackManagedTensorFromPyObjectNoSync`: export a producer object (no stream sync).
    pub managed_tensor_from_py_object_no_sync:
        Option<unsafe extern "C" fn(*mut c_void, *mut *mut DLManagedTensorVersioned) -> c_int>,
    /// `DLPackManagedTensorToPyObjectNoSync`: a producer object owning a managed tensor.
    pub managed_tensor_to_py_object_no_sync:
        Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned, *mut *mut c_void) -> c_int>,
    /// `DLPackDLTensorFromPyObjectNoSync`: a borrowed, non-owning `DLTensor` of an object.
    pub dltensor_from_py_object_no_sync:
        Option<unsafe extern "C" fn(*mut c_void, *mut DLTensor) -> c_int>,
    /// `DLPackCurrentWorkStream`: the stream the producer works on for a device.
    pub current_work_stream: Option<unsafe extern "C" fn(i32, i32, *mut *mut c_void) -> c_int>,
}

/// The Python class whose objects the table exports and makes: `ferry.HostArray`, which
/// implements it in `object.rs`. The table's functions know the class only through this.
pub(crate) trait Exchanged: Sized + 'static {
    /// The class's Python name, for errors.
    const NAME: &'static str;

    /// The payload of `object` when it is an instance of the class; `None` for any other
    /// object.
    fn lookup<'a>(object: &'a Bound<'_, PyAny>) -> Option<&'a Self>;

    /// The array an instance holds.
    fn array(&self) -> &HostArray;

    /// What an instance keeps for the bare `DLTensor`s it lends.
    fn loans(&self) -> &Loans;

    /// A new instance of the class holding `array`.
    fn wrap(py: Python<'_>, array: HostArray) -> PyResult<Bound<'_, PyAny>>;
}

/// What bare `DLTensor`s lent to C (`dltensor_from_py_object_no_sync`) need from the object
/// that lends them, kept in it: the shape and strides they point at, and a hold on the memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loans {
    /// The shape then the strides as DLPack's `int64_t`s, made on the first
    /// `dltensor_from_py_object_no_sync` call and kept (its `DLTensor` points into them).
    pub(crate) dlpack_dims: OnceLock<Box<[i64]>>,
    /// A clone of the object's array, kept from the first `dltensor_from_py_object_no_sync` on:
    /// its C borrower may write the memory while the object lives, and holds nothing, so this
    /// keeps the memory from ever again looking held by the object alone (which would let later
    /// exports share it with an immutable reader or another writer).
    pub(crate) lent_to_c: OnceLock<HostArray>,
}

impl Loans {
    /// Whether a bare `DLTensor` (which cannot say "do not write") of `array`, the object's
    /// array, may be handed out: when nothing but the object holds the memory, or when it
    /// already lent it that way (the borrowers are alike).
    pub(crate) fn lend_to_c(&self, array: &HostArray) -> bool {
        if self.lent_to_c.get().is_some() {
            return !array.is_read_only();
        }
        if !array.may_lend_writable() {
            return false;
        }
        self.lent_to_c.get_or_init(|| array.clone());
        true
    }

    /// The shape then the strides of `array`, the object's array, as `i64`s, made once and never
    /// changed afterwards.
    pub(crate) fn dlpack_dims(&self, array: &HostArray) -> &[i64] {
        self.dlpack_dims.get_or_init(|| {
            // usize and isize fit i64 on every platform ferry builds for (64-bit).
            let shape = array.shape().iter().map(|&d| d as i64);
            let strides = array.strides().iter().map(|&s| s as i64);
            shape.chain(strides).collect()
        })
    }
}

/// The table in a `static`: it is never written and its one pointer field is NULL.
pub(crate) struct Table(DLPackExchangeAPI);

// SAFETY: the table is immutable for the life of the process; its only pointer (`prev_api`) is
// NULL and the rest are function pointers, so sharing it between threads shares nothing mutable.
unsafe impl Sync for Table {}

impl Table {
    /// The table for class `C`, to keep in a `static`: the process-wide table every capsule
    /// points at (DLPack: it must outlive every consumer).
    pub(crate) const fn of<C: Exchanged>() -> Table {
        Table(DLPackExchangeAPI {
            header: DLPackExchangeAPIHeader {
                version: DLPackVersion { major: 1, minor: 3 },
                prev_api: std::ptr::null_mut(),
            },
            managed_tensor_allocator: Some(managed_tensor_allocator),
            managed_tensor_from_py_object_no_sync: Some(managed_tensor_from_py_object_no_sync::<C>),
            managed_tensor_to_py_object_no_sync: Some(managed_tensor_to_py_object_no_sync::<C>),
            dltensor_from_py_object_no_sync: Some(dltensor_from_py_object_no_sync::<C>),
            current_work_stream: Some(current_work_stream),
        })
    }
}

/// The capsule a class publishes as `__dlpack_c_exchange_api__` (no destructor: the table is
/// static).
pub(crate) fn exchange_api_capsule<'py>(
    py: Python<'py>,
    table: &'static Table,
) -> PyResult<Bound<'py, PyCapsule>> {
    let table = NonNull::from(&table.0).cast::<c_void>();
    // SAFETY: the pointer is to a static that lives as long as the process and is never
    // written, and the name is a static C string; consumers only read through it.
    unsafe { PyCapsule::new_with_pointer(py, table, CAPSULE_NAME) }
}

/// Runs `body` with the GIL the caller holds, attached to pyo3 as [`gate::entry`] runs its
/// bodies, turning an error or a panic into a Python exception and -1.
///
/// # Safety
///
/// The calling thread holds the GIL (the exchange API's contract for these functions).
unsafe fn with_python(body: impl FnOnce(Python<'_>) -> PyResult<()>) -> c_int {
    gate::entry("a DLPack exchange API call", -1, |py| body(py).map(|()| 0))
}

/// `py_object`, which the consumer found the table on, borrowed for the call.
///
/// # Safety
///
/// `py_object` is NULL or a live Python object (borrowed) and the GIL is held (`py`).
unsafe fn object_of<'a, 'py>(
    py: Python<'py>,
    py_object: *mut c_void,
) -> PyResult<Borrowed<'a, 'py, PyAny>> {
    if py_object.is_null() {
        return Err(PyValueError::new_err(
            "the DLPack exchange API was given a NULL object",
        ));
    }
    // SAFETY: per the contract, a live object borrowed for this call.
    Ok(unsafe { Borrowed::from_ptr(py, py_object.cast()) })
}

/// The payload of `object` when it is an instance of class `C`.
fn exported<'a, C: Exchanged>(object: &'a Bound<'_, PyAny>) -> PyResult<&'a C> {
    if let Some(ours) = C::lookup(object) {
        return Ok(ours);
    }
    Err(PyTypeError::new_err(format!(
        "ferry's DLPack exchange API exports {} objects only, got {}",
        C::NAME,
        object
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string())
    )))
}

/// `DLPackManagedTensorFromPyObjectNoSync`: the same versioned export as
/// `h.__dlpack__(max_version=(1, 3))` (shared memory, READ_ONLY for read-only arrays), without
/// the method call or the capsule.
///
/// # Safety
///
/// DLPack's contract: the GIL is held, `py_object` is a live object, and `out` is writable.
unsafe extern "C" fn managed_tensor_from_py_object_no_sync<C: Exchanged>(
    py_object: *mut c_void,
    out: *mut *mut DLManagedTensorVersioned,
) -> c_int {
    let body = |py: Python<'_>| {
        if out.is_null() {
            return Err(PyValueError::new_err("out is NULL"));
        }
        // SAFETY: per the contract, a live object, and the GIL is held.
        let object = unsafe { object_of(py, py_object) }?;
        let host = exported::<C>(&object)?;
        lease::check_readable(host.array())?;
        let export = LiveExport::share_as_cpu(host.array(), true);
        // SAFETY: `out` is non-null and, per the contract, writable.
        unsafe { *out = versioned(export) };
        Ok(())
    };
    // SAFETY: the caller holds the GIL (the exchange API's contract).
    unsafe { with_python(body) }
}

/// The versioned managed tensor of a versioned export.
fn versioned(tensor: DlpackTensor) -> *mut DLManagedTensorVersioned {
    match tensor.into_raw() {
        RawDlpack::Versioned(managed) => managed,
        RawDlpack::Legacy(_) => unreachable!("the export was made versioned"),
    }
}

/// `DLPackManagedTensorToPyObjectNoSync`: a `ferry.HostArray` (a new reference). A tensor
/// ferry exported is taken back as it is (its deleter runs once when the last view drops);
/// any other producer's host memory is copied and its deleter runs at once, as it does when
/// the tensor is refused.
///
/// # Safety
///
/// DLPack's contract: the GIL is held, `tensor` is a live managed tensor whose ownership is
/// handed over (its deleter has not run and nobody else will call it), and `out_py_object` is
/// writable.
unsafe extern "C" fn managed_tensor_to_py_object_no_sync<C: Exchanged>(
    tensor: *mut DLManagedTensorVersioned,
    out_py_object: *mut *mut c_void,
) -> c_int {
    // SAFETY: the caller holds the GIL (the exchange API's contract).
    let py = unsafe { Python::assume_attached() };
    if !tensor.is_null() && !raw::in_main_interpreter(py) {
        // Refused below (`entry`) without running `body`, but handed over all the same, so
        // it is released here, once. One of ferry's own exports waits for the main
        // interpreter (its memory may be a main-interpreter producer's); any other producer's
        // deleter belongs to the interpreter that handed the tensor over (a Python one may
        // not outlive it) and runs now.
        // SAFETY: per the contract, a live managed tensor handed over to ferry; a tensor
        // `from_versioned` refuses has had its deleter run.
        if let Ok(taken) = unsafe { DlpackTensor::from_versioned(tensor) } {
            if taken.made_by_ferry() {
                deferred::release(py, taken);
            } else {
                drop(taken);
            }
        }
    }
    let body = |py: Python<'_>| {
        if tensor.is_null() {
            return Err(PyValueError::new_err("tensor is NULL"));
        }
        // Ownership is taken before anything can fail, so the deleter runs exactly once on
        // every path (`from_versioned` and `into_host` run it when they refuse the tensor).
        // SAFETY: per the contract, a live managed tensor handed over to ferry.
        let tensor = unsafe { DlpackTensor::from_versioned(tensor) }.map_err(to_py_err)?;
        // Only ferry's own exports (what its allocator made) come back as they are. Any other
        // producer's memory is copied before any Python code runs: the caller hands over a
        // result, not a view it asked for, and a producer may keep its tensor but not its
        // memory (PyTorch's export, which `set_` frees under it) or re-wrap another library's
        // export (tvm-ffi returns a PyTorch argument in a managed tensor of its own, whose
        // deleter names neither library).
        let foreign = tensor.device().is_host_readable() && !tensor.made_by_ferry();
        let imported = tensor.into_host().map_err(to_py_err)?;
        let imported = if foreign {
            imported.snapshot().map_err(to_py_err)?
        } else {
            imported
        };
        if out_py_object.is_null() {
            return Err(PyValueError::new_err("out_py_object is NULL"));
        }
        let object = C::wrap(py, imported)?;
        // SAFETY: `out_py_object` is non-null and, per the contract, writable; the new
        // reference goes to the caller.
        unsafe { *out_py_object = object.into_ptr().cast() };
        Ok(())
    };
    // SAFETY: the caller holds the GIL (the exchange API's contract).
    unsafe { with_python(body) }
}

/// `DLPackDLTensorFromPyObjectNoSync`: a borrowed `DLTensor` of the array, valid while the
/// object lives (shape and strides point into the object). A `DLTensor` has no flags, so an
/// array its consumer must not write (read-only, or held by something else as well) is
/// refused with `BufferError`: the managed export carries READ_ONLY.
///
/// # Safety
///
/// DLPack's contract: the GIL is held, `py_object` is a live object, and `out` is writable.
unsafe extern "C" fn dltensor_from_py_object_no_sync<C: Exchanged>(
    py_object: *mut c_void,
    out: *mut DLTensor,
) -> c_int {
    let body = |py: Python<'_>| {
        if out.is_null() {
            return Err(PyValueError::new_err("out is NULL"));
        }
        // SAFETY: per the contract, a live object, and the GIL is held.
        let object = unsafe { object_of(py, py_object) }?;
        let ours = exported::<C>(&object)?;
        let array = ours.array();
        lease::check_readable(array)?;
        if !ours.loans().lend_to_c(array) {
            return Err(PyBufferError::new_err(format!(
                "array of shape {:?}, dtype {} is read-only, or held by something else as well (another HostArray, a framework tensor, an export), and a bare DLTensor cannot say it must not be written; use managed_tensor_from_py_object_no_sync or __dlpack__, which set READ_ONLY",
                array.shape(),
                array.dtype()
            )));
        }
        let ndim = array.ndim();
        // Shape then strides, stored in the object and never changed: the pointers stay valid
        // while the object lives, which is as long as DLPack lets the consumer use them.
        let dims = ours.loans().dlpack_dims(array);
        let (shape, strides) = if ndim == 0 {
            (std::ptr::null_mut(), std::ptr::null_mut())
        } else {
            let (shape, strides) = dims.split_at(ndim);
            (shape.as_ptr().cast_mut(), strides.as_ptr().cast_mut())
        };
        let mut tensor = array.dl_tensor(shape, strides);
        // Host memory, pinned and managed included, is labelled kDLCPU as `__dlpack__` does.
        tensor.device = DLDevice {
            device_type: Device::CPU_TYPE as _,
            device_id: 0,
        };
        // SAFETY: `out` is non-null and, per the contract, writable.
        unsafe { out.write(tensor) };
        Ok(())
    };
    // SAFETY: the caller holds the GIL (the exchange API's contract).
    unsafe { with_python(body) }
}

/// `DLPackCurrentWorkStream`: ferry's arrays live in host memory and ferry runs no device work,
/// so the stream is always NULL (for CPU, what DLPack asks; for a device, its default stream).
///
/// # Safety
///
/// DLPack's contract: the GIL is held and `out_current_stream` is writable.
unsafe extern "C" fn current_work_stream(
    _device_type: i32,
    _device_id: i32,
    out_current_stream: *mut *mut c_void,
) -> c_int {
    let body = |_: Python<'_>| {
        if out_current_stream.is_null() {
            return Err(PyValueError::new_err("out_current_stream is NULL"));
        }
        // SAFETY: non-null and, per the contract, writable.
        unsafe { out_current_stream.write(std::ptr::null_mut()) };
        Ok(())
    };
    // SAFETY: the caller holds the GIL (the exchange API's contract).
    unsafe { with_python(body) }
}

/// `DLPackManagedTensorAllocator`: a new, zeroed, row-major CPU array shaped like `prototype`
/// (its dtype, ndim, shape and device), exported as a writable managed tensor. Touches no
/// Python: failures go to `set_error` (when given) and return -1.
///
/// # Safety
///
/// DLPack's contract: `prototype` is a live `DLTensor` whose `shape` holds `ndim` entries,
/// `out` is writable, and `set_error`, when given, may be called with `error_ctx`.
unsafe extern "C" fn managed_tensor_allocator(
    prototype: *mut DLTensor,
    out: *mut *mut DLManagedTensorVersioned,
    error_ctx: *mut c_void,
    set_error: Option<SetError>,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if prototype.is_null() || out.is_null() {
            return Err(("ValueError", "prototype or out is NULL".to_string()));
        }
        // SAFETY: per the contract, a live DLTensor.
        let prototype = unsafe { &*prototype };
        // SAFETY: per the contract, `shape` holds `ndim` entries.
        let array = unsafe { allocate_like(prototype) }?;
        let export = LiveExport::hand_over(array);
        // SAFETY: `out` is non-null and, per the contract, writable.
        unsafe { out.write(versioned(export.into_dlpack())) };
        Ok(())
    }));
    let (kind, message) = match outcome {
        Ok(Ok(())) => return 0,
        Ok(Err(error)) => error,
        Err(_) => (
            "RuntimeError",
            "ferry panicked in managed_tensor_allocator".to_string(),
        ),
    };
    if let Some(set_error) = set_error {
        let kind = std::ffi::CString::new(kind).unwrap_or_default();
        let message = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: per the contract; both strings live until the call returns.
        unsafe { set_error(error_ctx, kind.as_ptr(), message.as_ptr()) };
    }
    -1
}

/// A zeroed row-major array with `prototype`'s dtype and shape, on the CPU.
///
/// # Safety
///
/// `prototype.shape` holds `prototype.ndim` entries (or `ndim` is 0).
unsafe fn allocate_like(prototype: &DLTensor) -> Result<HostArray, (&'static str, String)> {
    let device = Device {
        device_type: prototype.device.device_type as i32,
        device_id: prototype.device.device_id,
    };
    if device != Device::CPU {
        return Err((
            "BufferError",
            format!("ferry allocates host memory only (kDLCPU), not on {device}"),
        ));
    }
    let ndim = usize::try_from(prototype.ndim)
        .map_err(|_| ("ValueError", format!("ndim {} is negative", prototype.ndim)))?;
    let dims: &[i64] = if ndim == 0 {
        &[]
    } else if prototype.shape.is_null() {
        return Err(("ValueError", format!("ndim is {ndim} but shape is NULL")));
    } else {
        // SAFETY: per the contract, `shape` holds `ndim` entries.
        unsafe { std::slice::from_raw_parts(prototype.shape, ndim) }
    };
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            (
                "ValueError",
                format!("shape {dims:?} has a negative length"),
            )
        })?;
    let dtype = DType::from_desc(DTypeDesc {
        code: prototype.dtype.code,
        bits: prototype.dtype.bits,
        lanes: prototype.dtype.lanes,
    });
    let layout = StorageLayout::row_major(dtype, shape.clone())
        .map_err(|e| ("ValueError", e.to_string()))?;
    // The packed size of `shape`'s elements: what a row-major layout from byte 0 spans.
    let bytes = element_count(&shape)
        .and_then(|n| packed_bytes(n, dtype))
        .ok_or_else(|| {
            (
                "ValueError",
                format!("shape {shape:?} of dtype {dtype} overflows the address space"),
            )
        })?;
    // u64 words: aligned for every dtype ferry types (none needs more than 8 bytes).
    let words = bytes.div_ceil(8);
    let mut buffer: Vec<u64> = Vec::new();
    buffer.try_reserve_exact(words).map_err(|_| {
        (
            "MemoryError",
            format!("could not allocate {bytes} bytes for shape {shape:?}, dtype {dtype}"),
        )
    })?;
    buffer.resize(words, 0);
    HostArray::from_storage_mut(buffer, layout).map_err(|e| ("ValueError", e.to_string()))
}
