//! The calls every hand-off makes, `ferry.HostArray.__dlpack__`, `__dlpack_device__` and
//! `ferry.from_dlpack`, as plain C functions (CPython's fast calling convention,
//! `METH_FASTCALL | METH_KEYWORDS`, with keyword names matched by hand; `METH_NOARGS`), the way
//! NumPy defines its own: pyo3's generic argument handling (keyword matching, tuple extraction,
//! its trampoline) costs as much as an export itself.

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ferry_core::Device;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple};

use crate::class::PyHostArray;
use crate::import_any;
use crate::object::PyHostArrayMethods;

/// `__dlpack__`'s docstring, with the signature CPython shows as `__text_signature__` (before
/// `--`).
const DLPACK_DOC: &CStr =
    c"__dlpack__($self, /, *, stream=None, max_version=None, dl_device=None, copy=None)
--

DLPack export (the Python array API's `__dlpack__`): a `dltensor_versioned` capsule when
`max_version` has major >= 1, else a legacy `dltensor` one; `copy=True` exports a fresh copy;
`dl_device` may name the array's own device or the CPU.";

/// `__dlpack_device__`'s docstring, signature first.
const DLPACK_DEVICE_DOC: &CStr = c"__dlpack_device__($self, /)
--

`(device_type, device_id)` in DLPack's codes: always `(1, 0)`, kDLCPU. ferry's arrays are host
memory; pinned and managed memory (a CUDA `to_host`) is exported as kDLCPU too, the label
PyTorch and JAX give their own pinned arrays (`torch.from_dlpack` refuses kDLCUDAHost).";

/// `from_dlpack`'s docstring, signature first.
const FROM_DLPACK_DOC: &CStr = c"from_dlpack(x, /, *, copy=None)
--

Imports an array from any object with `__dlpack__` (NumPy, PyTorch, JAX, CuPy), sharing its
memory unless `copy=True`. A PyTorch tensor is copied (PyTorch may free or change its memory
under an importer: `set_`, `resize_`, `share_memory_`, in-place writes), so `copy=False`
raises `BufferError` for one.";

/// A method definition in a `static`: CPython keeps a pointer to it in the function object.
struct Definition(ffi::PyMethodDef);

// SAFETY: the definition is never written after compilation; its pointers are to static C
// strings and its function pointer is plain code, so threads share nothing mutable.
unsafe impl Sync for Definition {}

/// `ferry.HostArray.__dlpack__`'s definition (in the type's method table, `object.rs`).
pub(crate) const DLPACK: ffi::PyMethodDef = ffi::PyMethodDef {
    ml_name: c"__dlpack__".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: dlpack,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: DLPACK_DOC.as_ptr(),
};

/// `ferry.HostArray.__dlpack_device__`'s definition.
pub(crate) const DLPACK_DEVICE: ffi::PyMethodDef = ffi::PyMethodDef {
    ml_name: c"__dlpack_device__".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunction: dlpack_device,
    },
    ml_flags: ffi::METH_NOARGS,
    ml_doc: DLPACK_DEVICE_DOC.as_ptr(),
};

static FROM_DLPACK: Definition = Definition(ffi::PyMethodDef {
    ml_name: c"from_dlpack".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: from_dlpack,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: FROM_DLPACK_DOC.as_ptr(),
});

/// Adds `from_dlpack` to `module`, as a built-in function whose `__module__` is the module's
/// name.
pub(crate) fn add_from_dlpack(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let name = module.name()?;
    // SAFETY: the GIL is held; the module and its name are live (the function keeps its own
    // references); the definition is a static that CPython only reads, valid for the life of
    // the process as the function object requires.
    let function = unsafe {
        let function = ffi::PyCMethod_New(
            (&raw const FROM_DLPACK.0).cast_mut(),
            module.as_ptr(),
            name.as_ptr(),
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, function)?
    };
    module.add("from_dlpack", function)
}

/// Runs an entry point's body with the GIL CPython holds for C functions, turning an error or a
/// panic into a Python exception and `failed` (NULL, or -1). The body runs attached to pyo3
/// (`Python::try_attach`, which CPython's `PyGILState_Ensure` makes cheap on a thread that holds
/// the GIL): a `Py` or `PyErr` the body drops is released at once, not left in pyo3's pool of
/// deferred references, which attaching also empties. While the interpreter finalises, when
/// pyo3 refuses to attach, the body runs with the GIL CPython holds all the same. In a
/// subinterpreter (which reaches ferry only through an object made in the main one) it raises
/// `RuntimeError` instead of attaching, which would wait forever.
pub(crate) fn entry<R>(what: &str, failed: R, body: impl FnOnce(Python<'_>) -> PyResult<R>) -> R {
    // SAFETY: CPython calls C functions with the GIL held, which is all `assume_attached`
    // needs; nothing here attaches through PyGILState_Ensure before the interpreter is known
    // to be the main one.
    let held = unsafe { Python::assume_attached() };
    if let Err(error) = crate::check_main_interpreter(held, false) {
        error.restore(held);
        return failed;
    }
    let mut call = Some((failed, body));
    let mut run = |py: Python<'_>| {
        let (failed, body) = call.take().expect("run once");
        let error = match catch_unwind(AssertUnwindSafe(|| body(py))) {
            Ok(Ok(object)) => return object,
            Ok(Err(error)) => error,
            Err(_) => PyRuntimeError::new_err(format!("ferry panicked in {what}")),
        };
        error.restore(py);
        failed
    };
    match Python::try_attach(&mut run) {
        Some(result) => result,
        None => run(held),
    }
}

/// The C method: CPython calls it with the GIL held, `slf` an instance of the class (checked
/// again), the positional arguments then one value per name in `kwnames` at `args`.
unsafe extern "C" fn dlpack(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry("HostArray.__dlpack__", std::ptr::null_mut(), |py| {
        // SAFETY: the calling convention's guarantees (above), for the duration of the call.
        unsafe { export(py, slf, args, nargs, kwnames) }.map(Py::into_ptr)
    })
}

/// The C method `__dlpack_device__`: CPython calls it with the GIL held and `slf` an instance of
/// the class (its descriptor checks). The answer is the same tuple every time, made once.
unsafe extern "C" fn dlpack_device(
    _slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry("HostArray.__dlpack_device__", std::ptr::null_mut(), |py| {
        static CPU: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
        let cpu = CPU.get_or_try_init(py, || {
            PyTuple::new(py, [Device::CPU_TYPE, 0]).map(Bound::unbind)
        })?;
        Ok(cpu.clone_ref(py).into_ptr())
    })
}

/// The C function: CPython calls it with the GIL held, the positional arguments then one value
/// per name in `kwnames` at `args`.
unsafe extern "C" fn from_dlpack(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry("from_dlpack", std::ptr::null_mut(), |py| {
        // SAFETY: the calling convention's guarantees (above), for the duration of the call.
        unsafe { import(py, args, nargs, kwnames) }.map(Bound::into_ptr)
    })
}

/// The keyword names `__dlpack__` takes, in the order of [`export`]'s values.
const DLPACK_NAMES: [&CStr; 4] = [c"stream", c"max_version", c"dl_device", c"copy"];

/// The keyword names `from_dlpack` takes.
const FROM_DLPACK_NAMES: [&CStr; 1] = [c"copy"];

/// Parses `__dlpack__`'s arguments and exports.
///
/// # Safety
///
/// The GIL is held; `slf` is a live object; `args` holds `nargs` positional values then one
/// per name in `kwnames` (a tuple of strings, or NULL when there are none), all live for the
/// call.
unsafe fn export(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY: per the contract, a live object borrowed for the call.
    let slf = unsafe { Borrowed::from_ptr(py, slf) };
    let host = slf.cast::<PyHostArray>()?;
    if nargs != 0 {
        return Err(positional_count(
            "__dlpack__() takes only keyword arguments",
            nargs,
        ));
    }
    static INTERNED: PyOnceLock<[Py<PyString>; 4]> = PyOnceLock::new();
    // SAFETY: forwarded contract, after no positional values.
    let values = unsafe { keywords(py, "__dlpack__", &DLPACK_NAMES, &INTERNED, args, kwnames) }?;
    let [stream, max_version, dl_device, copy] = values;
    let max_version = max_version.map(|v| version(&v)).transpose()?;
    let dl_device = dl_device
        .map(|d| {
            d.extract::<(i32, i32)>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "dl_device must be a (device_type, device_id) tuple of integers, got {}",
                    &*d
                ))
            })
        })
        .transpose()?;
    let copy = copy.map(|c| boolean("__dlpack__", &c)).transpose()?;
    let stream = stream.map(|s| s.to_owned());
    host.host()
        .export(py, stream.as_ref(), max_version, dl_device, copy)
}

/// Parses `from_dlpack`'s arguments and imports.
///
/// # Safety
///
/// The GIL is held; `args` holds `nargs` positional values then one per name in `kwnames` (a
/// tuple of strings, or NULL when there are none), all live for the call.
unsafe fn import<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyHostArray>> {
    if nargs != 1 {
        return Err(positional_count(
            "from_dlpack() takes exactly one positional argument",
            nargs,
        ));
    }
    // SAFETY: per the contract, `args` holds the one positional value, live for the call.
    let x = unsafe { Borrowed::from_ptr(py, *args) };
    let copy = if kwnames.is_null() {
        None
    } else {
        static INTERNED: PyOnceLock<[Py<PyString>; 1]> = PyOnceLock::new();
        // SAFETY: forwarded contract; the keyword values follow the one positional value.
        let [copy] = unsafe {
            keywords(
                py,
                "from_dlpack",
                &FROM_DLPACK_NAMES,
                &INTERNED,
                args.add(1),
                kwnames,
            )
        }?;
        copy.map(|c| boolean("from_dlpack", &c)).transpose()?
    };
    let array = import_any(&x, copy)?;
    PyHostArray::new(array).into_pyobject(py)
}

/// The one argument of a method whose only parameter is `name` (given by position or by
/// keyword); `None` when absent or `None`.
///
/// # Safety
///
/// The GIL is held; `args` holds `nargs` positional values then one per name in `kwnames` (a
/// tuple of strings, or NULL when there are none), all live for `'a`.
pub(crate) unsafe fn one_argument<'a, 'py>(
    py: Python<'py>,
    function: &str,
    name: &'static CStr,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Option<Borrowed<'a, 'py, PyAny>>> {
    if nargs > 1 {
        return Err(positional_count(
            &format!("{function}() takes at most one argument"),
            nargs,
        ));
    }
    // SAFETY: per the contract, the positional value when there is one.
    let mut found = (nargs == 1).then(|| unsafe { Borrowed::from_ptr(py, *args) });
    if !kwnames.is_null() {
        // SAFETY: per the contract, `kwnames` is a live tuple of names whose values follow the
        // positional ones; items are borrowed for the call.
        unsafe {
            for i in 0..ffi::PyTuple_Size(kwnames) {
                keyword_slot(py, function, &[name], ffi::PyTuple_GetItem(kwnames, i))?;
                if found.is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "{function}() got multiple values for argument '{}'",
                        name.to_string_lossy()
                    )));
                }
                found = Some(Borrowed::from_ptr(py, *args.offset(nargs + i)));
            }
        }
    }
    Ok(found.filter(|value| !value.is_none()))
}

/// The `TypeError` for a call with the wrong number of positional arguments.
#[cold]
#[inline(never)]
fn positional_count(takes: &str, given: ffi::Py_ssize_t) -> PyErr {
    PyTypeError::new_err(format!("{takes} ({given} positional given)"))
}

/// The keyword values of a call, one slot per name in `names` (None where absent or `None`).
///
/// # Safety
///
/// The GIL is held; `kwnames` is NULL or a live tuple of strings, and `values` holds one live
/// value per name in it, all live for `'a`.
unsafe fn keywords<'a, 'py, const N: usize>(
    py: Python<'py>,
    function: &str,
    names: &[&CStr; N],
    interned: &PyOnceLock<[Py<PyString>; N]>,
    values: *const *mut ffi::PyObject,
    kwnames: *mut ffi::PyObject,
) -> PyResult<[Option<Borrowed<'a, 'py, PyAny>>; N]> {
    let mut found: [Option<Borrowed<'a, 'py, PyAny>>; N] = [None; N];
    if kwnames.is_null() {
        return Ok(found);
    }
    // Names a caller spelled out are these interned strings themselves, so most lookups are
    // pointer comparisons.
    let interned = interned.get_or_init(py, || {
        names.map(|name| PyString::intern(py, &name.to_string_lossy()).unbind())
    });
    // SAFETY: per the contract, `kwnames` is a live tuple and `values` holds one live value per
    // name; items are borrowed for the call.
    unsafe {
        for i in 0..ffi::PyTuple_Size(kwnames) {
            let name = ffi::PyTuple_GetItem(kwnames, i);
            let slot = match interned.iter().position(|n| n.as_ptr() == name) {
                Some(slot) => slot,
                None => keyword_slot(py, function, names, name)?,
            };
            let value = Borrowed::from_ptr(py, *values.offset(i));
            found[slot] = (!value.is_none()).then_some(value);
        }
    }
    Ok(found)
}

/// The index in `names` of a keyword name that is not one of the interned strings.
///
/// # Safety
///
/// The GIL is held and `name` is a live object.
unsafe fn keyword_slot(
    py: Python<'_>,
    function: &str,
    names: &[&CStr],
    name: *mut ffi::PyObject,
) -> PyResult<usize> {
    // SAFETY: per the contract; the comparison is only made on a `str`.
    let slot = unsafe {
        (ffi::PyUnicode_Check(name) != 0)
            .then(|| {
                names
                    .iter()
                    .position(|n| ffi::PyUnicode_CompareWithASCIIString(name, n.as_ptr()) == 0)
            })
            .flatten()
    };
    slot.ok_or_else(|| {
        // SAFETY: per the contract, a live object.
        let name = unsafe { Borrowed::from_ptr(py, name) };
        PyTypeError::new_err(format!(
            "{function}() got an unexpected keyword argument {:?}",
            &*name
        ))
    })
}

/// `copy`: a bool (`None` was filtered out before).
fn boolean(function: &str, value: &Borrowed<'_, '_, PyAny>) -> PyResult<bool> {
    value.extract::<bool>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{function}(): copy must be None or a bool, got {}",
            &**value
        ))
    })
}

/// `max_version`: a `(major, minor)` tuple of non-negative integers.
fn version(value: &Borrowed<'_, '_, PyAny>) -> PyResult<(u32, u32)> {
    let py = value.py();
    let tuple = value.as_ptr();
    let part = |i: ffi::Py_ssize_t| {
        // SAFETY: the GIL is held and `tuple` is a live tuple with two items (checked below);
        // the item is borrowed from it, and a failed conversion's error is cleared.
        let number = unsafe { ffi::PyLong_AsLong(ffi::PyTuple_GetItem(tuple, i)) };
        if number == -1 && PyErr::take(py).is_some() {
            return None;
        }
        u32::try_from(number).ok()
    };
    // SAFETY: the GIL is held and `tuple` is live; the size is read only from a tuple.
    let pair = unsafe { ffi::PyTuple_Check(tuple) != 0 && ffi::PyTuple_Size(tuple) == 2 };
    let parsed = pair.then(|| Some((part(0)?, part(1)?))).flatten();
    parsed.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "max_version must be a (major, minor) tuple of non-negative integers, got {}",
            &**value
        ))
    })
}
