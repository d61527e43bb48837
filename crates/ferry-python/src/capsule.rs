//! DLPack's Python capsule protocol: ferry's exports as `dltensor[_versioned]` capsules (with
//! a destructor that frees only what no consumer took) and the count of live exports, taking
//! the managed tensor out of other producers' capsules, and asking an object's `__dlpack__` for
//! one the way the specification says. What an import makes of the capsule is `import.rs`'s.

use std::ffi::{CStr, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_core::dlpack_rs::ffi::{DLManagedTensor, DLManagedTensorVersioned};
use ferry_core::{Device, DlpackTensor, HostArray, RawDlpack};
use pyo3::exceptions::{PyAttributeError, PyBufferError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyNone, PyString, PyTuple};

use crate::error::to_py_err;
use crate::{deferred, raw};

const VERSIONED: &CStr = c"dltensor_versioned";
const USED_VERSIONED: &CStr = c"used_dltensor_versioned";
const LEGACY: &CStr = c"dltensor";
const USED_LEGACY: &CStr = c"used_dltensor";

/// The DLPack version ferry asks producers for.
const MAX_VERSION: (u32, u32) = (1, 3);

/// Exports handed to Python whose deleter has not run yet.
static LIVE_EXPORTS: AtomicUsize = AtomicUsize::new(0);

/// How many arrays ferry exported to Python consumers that are still alive (their DLPack
/// deleter has not run). Zero once every consumer dropped what it imported.
pub fn live_exports() -> usize {
    LIVE_EXPORTS.load(Ordering::SeqCst)
}

/// The guard of one export: counted in [`live_exports`] from its making until the exported
/// array's last holder drops it.
pub(crate) struct LiveExport(());

impl LiveExport {
    /// An export sharing `array`'s memory (versioned, or legacy for an old consumer), counted
    /// until the consumer's deleter runs. It holds `array`'s owner, not `array`: `array` and its
    /// other clones (the `ferry.HostArray` object, the caller's own `HostArray`) still reach the
    /// memory, and no longer hold it alone, so none of them hands out a mutable view while the
    /// consumer reads; a ferry re-import of the export is in effect a clone of `array` (its
    /// owner and access, on the same count).
    pub(crate) fn share(array: &HostArray, versioned: bool) -> DlpackTensor {
        // SAFETY: the export goes to a Python consumer (NumPy, PyTorch, through `__dlpack__` or
        // the exchange table), which may write it where it is not READ_ONLY: only while this
        // array holds its owner alone, so no framework tensor or other export reads the memory
        // then. Such a consumer may write on another thread while one of ferry's methods reads
        // the array (PyTorch and NumPy release the GIL inside their operations): those methods
        // read bytes and numbers, which may then be torn (as NumPy's own reads would be), and
        // read bools only as bytes checked in the load that reads them (`cast`, `to_array`,
        // `write_row_major`, Arrow's packing). A Rust view held while Python writes is
        // ARCHITECTURE.md's trust boundary.
        unsafe {
            if versioned {
                array.to_dlpack_counted(&LIVE_EXPORTS)
            } else {
                array.to_dlpack_legacy_counted(&LIVE_EXPORTS)
            }
        }
    }

    /// The export `__dlpack__` and the exchange API hand out by default: [`share`](Self::share)
    /// labelled kDLCPU (pinned and managed memory is host memory the CPU reads where it is;
    /// PyTorch's `from_dlpack` refuses kDLCUDAHost).
    pub(crate) fn share_as_cpu(array: &HostArray, versioned: bool) -> DlpackTensor {
        if array.device() == Device::CPU {
            LiveExport::share(array, versioned)
        } else {
            LiveExport::share(&array.clone().as_cpu_memory(), versioned)
        }
    }

    /// `array` itself, moved in and counted until its last holder drops it: when it is a copy
    /// made for this export alone, nothing else holds its memory, which stays `Exclusive` with
    /// its copy log (the consumer may be told IS_COPIED).
    pub(crate) fn hand_over(array: HostArray) -> HostArray {
        LIVE_EXPORTS.fetch_add(1, Ordering::SeqCst);
        array.with_guard(LiveExport(()))
    }
}

impl Drop for LiveExport {
    fn drop(&mut self) {
        LIVE_EXPORTS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A capsule holding `tensor` under DLPack's name; the capsule frees it only if no consumer
/// took it.
pub(crate) fn new_capsule(py: Python<'_>, tensor: DlpackTensor) -> PyResult<Py<PyAny>> {
    let (ptr, name) = match tensor.into_raw() {
        RawDlpack::Versioned(p) => (p.cast::<c_void>(), VERSIONED),
        RawDlpack::Legacy(p) => (p.cast::<c_void>(), LEGACY),
    };
    // SAFETY: `ptr` is a live managed tensor (not NULL) that this capsule now owns; the
    // destructor below honours DLPack's capsule rules.
    match unsafe { raw::new_capsule(py, ptr, name, capsule_destructor) } {
        Some(capsule) => Ok(capsule.unbind()),
        None => {
            // SAFETY: the capsule was not made, so the tensor is still ours to release.
            unsafe { release(ptr, name) };
            Err(PyErr::fetch(py))
        }
    }
}

/// Calls the deleter of the managed tensor at `ptr`, of the kind `name` says.
///
/// # Safety
///
/// `ptr` is a live managed tensor of that kind whose deleter has not run.
unsafe fn release(ptr: *mut c_void, name: &CStr) {
    // SAFETY: per the contract.
    unsafe {
        if name == VERSIONED {
            let managed = ptr.cast::<DLManagedTensorVersioned>();
            if let Some(deleter) = (*managed).deleter {
                deleter(managed);
            }
        } else {
            let managed = ptr.cast::<DLManagedTensor>();
            if let Some(deleter) = (*managed).deleter {
                deleter(managed);
            }
        }
    }
}

/// Destructor of ferry's capsules: a capsule still named `dltensor[_versioned]` was never
/// consumed, so its tensor is released here; a renamed one belongs to its consumer.
unsafe extern "C" fn capsule_destructor(capsule: *mut pyo3::ffi::PyObject) {
    // SAFETY: Python calls this with the GIL held on a live capsule (borrowed for the call); the
    // release runs with the error indicator put aside (the destructor may run while an
    // exception propagates, and a producer's deleter may run Python code).
    unsafe {
        let py = Python::assume_attached();
        let capsule = Borrowed::from_ptr(py, capsule);
        raw::with_error_indicator_aside(|| {
            // An unconsumed capsule still has the very name pointer `new_capsule` gave it; the
            // comparison by content is for a name set again from another copy of the string
            // (a capsule's name, when not NULL, is a NUL-terminated string it keeps).
            let name = raw::capsule_name(&capsule);
            let unconsumed = [VERSIONED, LEGACY].into_iter().find(|ours| {
                name == ours.as_ptr() || (!name.is_null() && CStr::from_ptr(name) == *ours)
            });
            if let Some(ours) = unconsumed
                && let Ok(ptr) = raw::capsule_pointer(&capsule, ours)
            {
                deferred::release(py, Unconsumed { ptr, name: ours });
            }
        });
    }
}

/// The tensor of one of ferry's capsules that no consumer took, released when this drops.
struct Unconsumed {
    ptr: *mut c_void,
    name: &'static CStr,
}

// SAFETY: only `new_capsule`'s capsules are released through this, and they hold ferry's own
// exports, whose deleters free Rust memory (and through it may run a producer's deleter, which
// takes the GIL itself) from any thread.
unsafe impl Send for Unconsumed {}

impl Drop for Unconsumed {
    fn drop(&mut self) {
        // SAFETY: made from an unconsumed capsule's pointer under its name, once; the capsule
        // is being destroyed, so nothing else releases the tensor.
        unsafe { release(self.ptr, self.name) };
    }
}

/// Takes the managed tensor out of a DLPack capsule, renaming the capsule to `used_…` so its
/// destructor leaves the tensor alone.
#[inline]
pub(crate) fn take_capsule(capsule: &Bound<'_, PyAny>) -> PyResult<DlpackTensor> {
    for (name, used) in [(VERSIONED, USED_VERSIONED), (LEGACY, USED_LEGACY)] {
        if !raw::capsule_is_valid(capsule, name) {
            continue;
        }
        let managed = raw::capsule_pointer(capsule, name)?;
        raw::rename_capsule(capsule, used)?;
        // SAFETY: the producer handed over a managed tensor of this kind, and the rename made us
        // its only owner; producers' deleters (NumPy's, PyTorch's) may be called from any thread.
        // (PyTorch's keeps only the tensor alive, not its memory: its exports are copied before
        // any Python code runs after they are taken out, `torch::made_by_pytorch`.)
        let tensor = unsafe {
            if name == VERSIONED {
                DlpackTensor::from_versioned(managed.cast())
            } else {
                DlpackTensor::from_legacy(managed.cast())
            }
        };
        return tensor.map_err(to_py_err);
    }
    Err(not_a_capsule(capsule))
}

/// The error for an object that is no unused DLPack capsule, out of [`take_capsule`]'s hot path.
#[cold]
#[inline(never)]
fn not_a_capsule(object: &Bound<'_, PyAny>) -> PyErr {
    match object.get_type().name() {
        Ok(name) => PyTypeError::new_err(format!(
            "__dlpack__ returned {name}, not an unused 'dltensor' or 'dltensor_versioned' capsule"
        )),
        Err(error) => error,
    }
}

/// Which keywords a `__dlpack__` request passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keywords {
    /// All three that DLPack's Python specification gives consumers, as NumPy's `from_dlpack`
    /// passes them: `max_version`, `dl_device` (`None` unless asked for the host) and `copy`
    /// (`None` unless given). A producer whose `__dlpack__` is a Python function then fills
    /// none of them in from its defaults: for PyTorch's, about 240 instructions a call fewer
    /// than with `max_version` alone, which is what made ferry's import of a tensor cost more
    /// than NumPy's although ferry's own part is cheaper.
    All,
    /// Only the keywords with a value: `max_version`, then `dl_device` and `copy` where given.
    /// For a producer that refused [`All`](Keywords::All) with `TypeError`, one that knows
    /// `max_version` but not the other two.
    Given,
}

/// What every `__dlpack__` request passes, made once per interpreter: the method's name, the
/// version tuple `(1, 3)`, the host device `(kDLCPU, 0)`, `True` and `False`, the keyword names
/// of each keyword set, and the vectorcall entry point.
struct Request {
    method: Py<PyString>,
    version: Py<PyTuple>,
    host: Py<PyTuple>,
    booleans: [Py<PyBool>; 2],
    /// [`Keywords::All`]'s names: `max_version`, `dl_device`, `copy`.
    all: Py<PyTuple>,
    /// [`Keywords::Given`]'s, indexed by `2 * to_host + copy.is_some()`: `max_version`, then
    /// `dl_device` and `copy` where they are passed, in that order.
    given: [Py<PyTuple>; 4],
    /// `PyObject_VectorcallMethod`, where the interpreter exports it: about 600 instructions
    /// less per `__dlpack__` request than `PyObject_Call` with a keyword dict.
    vectorcall: Option<raw::Vectorcall>,
}

impl Request {
    #[inline]
    fn get(py: Python<'_>) -> PyResult<&Request> {
        static REQUEST: PyOnceLock<Request> = PyOnceLock::new();
        REQUEST.get_or_try_init(py, || {
            let names = |to_host: bool, copy: bool| {
                let names = [
                    Some("max_version"),
                    to_host.then_some("dl_device"),
                    copy.then_some("copy"),
                ];
                let names: Vec<_> = names.into_iter().flatten().collect();
                PyTuple::new(py, names.into_iter().map(|n| PyString::intern(py, n)))
                    .map(Bound::unbind)
            };
            Ok(Request {
                method: PyString::intern(py, "__dlpack__").unbind(),
                version: PyTuple::new(py, [MAX_VERSION.0, MAX_VERSION.1])?.unbind(),
                host: PyTuple::new(py, [Device::CPU_TYPE, 0])?.unbind(),
                booleans: [false, true].map(|b| PyBool::new(py, b).to_owned().unbind()),
                all: names(true, true)?,
                given: [
                    names(false, false)?,
                    names(false, true)?,
                    names(true, false)?,
                    names(true, true)?,
                ],
                vectorcall: raw::Vectorcall::lookup(),
            })
        })
    }
}

/// Calls `obj.__dlpack__(max_version=(1, 3), dl_device=…, copy=…)`, with `dl_device` the host
/// when `to_host` (else `None`) and `copy` as given (else `None`), passing the `None`s only for
/// [`Keywords::All`]: through `PyObject_VectorcallMethod` where the interpreter has it, else
/// with a fresh keyword dict (a producer whose `__dlpack__` is a C function taking a keyword
/// dict receives the dict itself and may change it).
#[inline]
fn call_dlpack<'py>(
    obj: &Bound<'py, PyAny>,
    copy: Option<bool>,
    to_host: bool,
    keywords: Keywords,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let request = Request::get(py)?;
    // `obj` (self), then the keyword values in the order of the names: max_version, then
    // dl_device and copy (where given, or always for `All`).
    // `None` is a singleton, which lives as long as the interpreter.
    let none = PyNone::get(py).as_ptr();
    let mut args = [obj.as_ptr(), request.version.as_ptr(), none, none];
    let mut given = 2;
    if to_host {
        args[given] = request.host.as_ptr();
    }
    if to_host || keywords == Keywords::All {
        given += 1;
    }
    if let Some(copy) = copy {
        args[given] = request.booleans[usize::from(copy)].as_ptr();
    }
    if copy.is_some() || keywords == Keywords::All {
        given += 1;
    }
    let kwnames = match keywords {
        Keywords::All => request.all.bind(py),
        Keywords::Given => {
            request.given[usize::from(to_host) * 2 + usize::from(copy.is_some())].bind(py)
        }
    };
    let Some(vectorcall) = request.vectorcall else {
        return call_dlpack_with_dict(obj, request, kwnames, &args[1..given]);
    };
    // SAFETY: `args[..given]` holds `obj` (self) then one borrowed, live value per name in
    // `kwnames` (`given - 1` of them, which is how many names the chosen tuple has), all
    // outliving the call.
    unsafe { vectorcall.call_method(py, request.method.bind(py), &args[..given], Some(kwnames)) }
}

/// `obj.name()`, through `PyObject_VectorcallMethod` where the interpreter has it (no bound
/// method object is made, about 40 ns less a call than pyo3's `call_method0` on the abi3
/// build), else through `call_method0`.
#[inline]
pub(crate) fn call_method0<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let Some(vectorcall) = Request::get(py)?.vectorcall else {
        return obj.call_method0(name);
    };
    // SAFETY: the arguments are `obj` (self), which outlives the call, and no keywords.
    unsafe { vectorcall.call_method(py, name, &[obj.as_ptr()], None) }
}

/// [`call_dlpack`] where the interpreter has no `PyObject_VectorcallMethod`: the keywords in a
/// fresh dict.
#[cold]
#[inline(never)]
fn call_dlpack_with_dict<'py>(
    obj: &Bound<'py, PyAny>,
    request: &Request,
    kwnames: &Bound<'py, PyTuple>,
    values: &[*mut pyo3::ffi::PyObject],
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let kwargs = PyDict::new(py);
    for (name, &value) in kwnames.iter().zip(values) {
        // SAFETY: `value` is one of `request`'s objects, alive for the interpreter.
        kwargs.set_item(name, unsafe { Borrowed::from_ptr(py, value) })?;
    }
    obj.call_method(request.method.bind(py), (), Some(&kwargs))
}

/// Releases `tensor`, which lives on a device, and asks `obj` again for a copy on the host
/// (out of the hot path of `import.rs`'s `request_host_tensor`).
#[cold]
#[inline(never)]
pub(crate) fn request_host_copy(
    obj: &Bound<'_, PyAny>,
    copy: Option<bool>,
    tensor: DlpackTensor,
) -> PyResult<DlpackTensor> {
    let py = obj.py();
    let device = tensor.device();
    drop(tensor);
    match call_dlpack(obj, copy, true, Keywords::Given) {
        Ok(capsule) => take_capsule(&capsule),
        Err(e) if e.is_instance_of::<PyTypeError>(py) => Err(PyBufferError::new_err(format!(
            "the {} lives on {device} and its producer cannot copy it to the host (its __dlpack__ does not take dl_device); move it to the CPU first (for example t.cpu())",
            obj.get_type().name()?
        ))),
        Err(e) => Err(e),
    }
}

/// Calls `obj.__dlpack__` the way DLPack's Python specification asks consumers to: with
/// `max_version`, `dl_device=None` and `copy` (`None` unless given), as NumPy does. A producer
/// that raises `TypeError` is asked again with only `max_version` (and `copy` when given), then
/// with no arguments (a legacy capsule), after `__dlpack_device__` says its array is one the
/// host can read (a legacy producer cannot copy to the host).
#[inline]
pub(crate) fn request_capsule<'py>(
    obj: &Bound<'py, PyAny>,
    copy: Option<bool>,
) -> PyResult<Bound<'py, PyAny>> {
    match call_dlpack(obj, copy, false, Keywords::All) {
        Ok(capsule) => Ok(capsule),
        Err(e) => request_capsule_again(obj, copy, e),
    }
}

/// After `obj.__dlpack__` with every keyword raised `error`: when that was a `TypeError`, the
/// request with only the keywords that have a value, and then the legacy one; otherwise what
/// [`request_legacy_capsule`] makes of `error` (out of [`request_capsule`]'s hot path).
#[cold]
#[inline(never)]
fn request_capsule_again<'py>(
    obj: &Bound<'py, PyAny>,
    copy: Option<bool>,
    error: PyErr,
) -> PyResult<Bound<'py, PyAny>> {
    if !error.is_instance_of::<PyTypeError>(obj.py()) {
        return request_legacy_capsule(obj, error);
    }
    match call_dlpack(obj, copy, false, Keywords::Given) {
        Ok(capsule) => Ok(capsule),
        Err(e) => request_legacy_capsule(obj, e),
    }
}

/// After `obj.__dlpack__(max_version=…)` raised `error`: the legacy request (no arguments) when
/// that was a `TypeError`, a `TypeError` saying so when `obj` has no `__dlpack__`, else `error`
/// itself (out of [`request_capsule`]'s hot path).
#[cold]
#[inline(never)]
fn request_legacy_capsule<'py>(
    obj: &Bound<'py, PyAny>,
    error: PyErr,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let method = intern!(py, "__dlpack__");
    if error.is_instance_of::<PyAttributeError>(py) && !obj.hasattr(method)? {
        return Err(PyTypeError::new_err(format!(
            "object of type {} has no __dlpack__ method; ferry imports NumPy arrays, PyTorch tensors, JAX and CuPy arrays (anything with __dlpack__)",
            obj.get_type().name()?
        )));
    }
    if !error.is_instance_of::<PyTypeError>(py) {
        return Err(error);
    }
    // A legacy producer: only host memory can come back.
    if obj.hasattr(intern!(py, "__dlpack_device__"))? {
        let (device_type, device_id): (i32, i32) = obj
            .call_method0(intern!(py, "__dlpack_device__"))?
            .extract()?;
        let device = Device {
            device_type,
            device_id,
        };
        if !device.is_host_readable() {
            return Err(PyBufferError::new_err(format!(
                "the {} lives on {device} and its producer speaks only legacy DLPack, which cannot copy to the host; move it to the CPU first (for example t.cpu())",
                obj.get_type().name()?
            )));
        }
    }
    obj.call_method0(method)
}
