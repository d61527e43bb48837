//! The calls every hand-off makes, `ferry.HostArray.__dlpack__`, `__dlpack_device__` and
//! `ferry.from_dlpack`, as plain C functions (CPython's fast calling convention,
//! `METH_FASTCALL | METH_KEYWORDS`, with keyword names matched by hand; `METH_NOARGS`), the way
//! NumPy defines its own: pyo3's generic argument handling (keyword matching, tuple extraction,
//! its trampoline) costs as much as an export itself. The argument parsing is `raw.rs`'s; the
//! type's method table, which holds the first two, is assembled in `object.rs`.

use std::ffi::CStr;

use ferry_core::Device;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple};

use crate::class::{PyHostArray, PyHostArrayMethods, import_any};
use crate::gate::entry;
use crate::raw::{self, StaticMethodDef, keywords, positional_count};

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

static FROM_DLPACK: StaticMethodDef = StaticMethodDef(ffi::PyMethodDef {
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
    // SAFETY: `from_dlpack` has the signature of `METH_FASTCALL | METH_KEYWORDS`, its flags.
    let function = unsafe { raw::new_function(module, &FROM_DLPACK) }?;
    module.add("from_dlpack", function)
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
    raw::u32_pair(value).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "max_version must be a (major, minor) tuple of non-negative integers, got {}",
            &**value
        ))
    })
}
