//! `ferry.HostArray.__dlpack__` as a C method of CPython's fast calling convention
//! (`METH_FASTCALL | METH_KEYWORDS`, keyword names matched by hand), the way NumPy defines its
//! own: consumers call it on every hand-off, and pyo3's generic argument handling (keyword
//! matching, tuple extraction, its trampoline) cost as much as the export itself.

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use pyo3::{PyTypeInfo, ffi};

use crate::class::PyHostArray;

/// The docstring, with the signature CPython shows as `__text_signature__` (before `--`).
const DOC: &CStr =
    c"__dlpack__($self, /, *, stream=None, max_version=None, dl_device=None, copy=None)
--

DLPack export (the Python array API's `__dlpack__`): a `dltensor_versioned` capsule when
`max_version` has major >= 1, else a legacy `dltensor` one; `copy=True` exports a fresh copy;
`dl_device` may name the array's own device or the CPU.";

/// A method definition in a `static`: CPython keeps a pointer to it in the descriptor.
struct Definition(ffi::PyMethodDef);

// SAFETY: the definition is never written after compilation; its pointers are to static C
// strings and its function pointer is plain code, so threads share nothing mutable.
unsafe impl Sync for Definition {}

static DLPACK: Definition = Definition(ffi::PyMethodDef {
    ml_name: c"__dlpack__".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: dlpack,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: DOC.as_ptr(),
});

/// The method descriptor `ferry.HostArray.__dlpack__` (a class attribute made while the class
/// is created: pyo3 hands the type object out to such re-entrant calls before filling its
/// dictionary).
pub(crate) fn dlpack_descriptor(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let class = PyHostArray::type_object(py);
    // SAFETY: the GIL is held; the type is live; the definition is a static that CPython only
    // reads (the `*mut` is the C signature's), valid for the life of the process as the
    // descriptor requires.
    unsafe {
        let descriptor =
            ffi::PyDescr_NewMethod(class.as_type_ptr(), (&raw const DLPACK.0).cast_mut());
        Bound::from_owned_ptr_or_err(py, descriptor).map(Bound::unbind)
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
    // SAFETY: CPython calls C methods with the GIL held, which is all `assume_attached` needs.
    // (pyo3's attach count is not raised, to keep the call cheap: a `Py` dropped here, such as
    // an error's arguments, is released at pyo3's next entry instead of at once.)
    let py = unsafe { Python::assume_attached() };
    // SAFETY: the calling convention's guarantees (above), for the duration of the call.
    let outcome = catch_unwind(AssertUnwindSafe(|| unsafe {
        call(py, slf, args, nargs, kwnames)
    }));
    let error = match outcome {
        Ok(Ok(capsule)) => return capsule.into_ptr(),
        Ok(Err(error)) => error,
        Err(_) => PyRuntimeError::new_err("ferry panicked in HostArray.__dlpack__"),
    };
    error.restore(py);
    std::ptr::null_mut()
}

/// The keyword names `__dlpack__` takes, in the order of [`call`]'s values.
const NAMES: [&CStr; 4] = [c"stream", c"max_version", c"dl_device", c"copy"];

/// Parses the arguments and exports.
///
/// # Safety
///
/// The GIL is held; `slf` is a live object; `args` holds `nargs` positional values then one
/// per name in `kwnames` (a tuple of strings, or NULL when there are none), all live for the
/// call.
unsafe fn call(
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
        return Err(PyTypeError::new_err(format!(
            "__dlpack__() takes only keyword arguments ({nargs} positional given)"
        )));
    }
    // stream, max_version, dl_device, copy: borrowed, None left out.
    let mut values: [Option<Borrowed<'_, '_, PyAny>>; 4] = [None; 4];
    if !kwnames.is_null() {
        let interned = interned_names(py);
        // SAFETY: per the contract, `kwnames` is a live tuple and `args` holds one live value
        // per name (after no positional ones); items are borrowed for the call.
        unsafe {
            for i in 0..ffi::PyTuple_Size(kwnames) {
                let name = ffi::PyTuple_GetItem(kwnames, i);
                // Names a caller spelled out are the interned strings themselves.
                let slot = match interned.iter().position(|n| n.as_ptr() == name) {
                    Some(slot) => slot,
                    None => keyword_slot(py, name)?,
                };
                let value = Borrowed::from_ptr(py, *args.offset(i));
                values[slot] = (!value.is_none()).then_some(value);
            }
        }
    }
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
    let copy = copy
        .map(|c| {
            c.extract::<bool>().map_err(|_| {
                PyTypeError::new_err(format!("copy must be None or a bool, got {}", &*c))
            })
        })
        .transpose()?;
    let stream = stream.map(|s| s.to_owned());
    host.get()
        .export(py, stream.as_ref(), max_version, dl_device, copy)
}

/// [`NAMES`] as interned strings, made once per interpreter: keyword names a caller spelled out
/// are these very objects, so most lookups are pointer comparisons.
fn interned_names(py: Python<'_>) -> &[Py<PyString>; 4] {
    static INTERNED: PyOnceLock<[Py<PyString>; 4]> = PyOnceLock::new();
    INTERNED.get_or_init(py, || {
        NAMES.map(|name| PyString::intern(py, &name.to_string_lossy()).unbind())
    })
}

/// The index in [`NAMES`] of a keyword name that is not one of the interned strings.
///
/// # Safety
///
/// The GIL is held and `name` is a live object.
unsafe fn keyword_slot(py: Python<'_>, name: *mut ffi::PyObject) -> PyResult<usize> {
    // SAFETY: per the contract; the comparison is only made on a `str`.
    let slot = unsafe {
        (ffi::PyUnicode_Check(name) != 0)
            .then(|| {
                NAMES
                    .iter()
                    .position(|n| ffi::PyUnicode_CompareWithASCIIString(name, n.as_ptr()) == 0)
            })
            .flatten()
    };
    slot.ok_or_else(|| {
        // SAFETY: per the contract, a live object.
        let name = unsafe { Borrowed::from_ptr(py, name) };
        PyTypeError::new_err(format!(
            "__dlpack__() got an unexpected keyword argument {}",
            &*name
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
