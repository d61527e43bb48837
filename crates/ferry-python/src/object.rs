//! The `ferry.HostArray` type object, built by hand from a `PyType_Spec`: instances are plain
//! objects (not garbage-collected, like NumPy's arrays) of `PyObject_Malloc` memory holding a
//! [`PyHostArray`] after the object header, and the type can be neither instantiated nor
//! subclassed from Python. pyo3's `#[pyclass]` always makes a garbage-collected type and
//! creates instances through `object.__new__`, which cost `ferry.from_dlpack` about 100 ns more
//! than NumPy pays for its array.
//!
//! Invariant: every object whose type is this type was made by [`IntoPyObject`] for
//! [`PyHostArray`] (so its payload is initialised) and its payload is only read until
//! `dealloc` drops it. Python cannot make another: the type has no `tp_new`
//! (`Py_TPFLAGS_DISALLOW_INSTANTIATION`), no subclasses (no `Py_TPFLAGS_BASETYPE`), and it is
//! immutable (`Py_TPFLAGS_IMMUTABLETYPE`), so no `__new__` (or any other attribute) can be
//! set on it afterwards, which would give it an allocator that leaves the payload unwritten.
//! `__class__` assignment to or from it is refused by CPython for the same flag
//! (`object_set_class` accepts only mutable types, or module types).
//!
//! This module assembles the type — its slots, attributes and method table (the DLPack
//! methods from `method.rs`, the conveniences and the Arrow methods here) and its exchange
//! table (`exchange.rs`, instantiated for [`PyHostArray`] through [`Exchanged`]) — and
//! `raw.rs` builds it and allocates and frees its instances.

use std::ffi::{CStr, c_int, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ferry_core::HostArray;
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{PyTypeInfo, ffi};

use crate::class::{PyHostArray, PyHostArrayMethods, dtype_name};
use crate::exchange::{Exchanged, Loans, Table, exchange_api_capsule};
use crate::gate::entry;
use crate::{deferred, method, raw};

/// The class docstring.
const DOC: &CStr = c"A ferry HostArray: a strided host array (shape, strides in elements, dtype) \
that NumPy, PyTorch, JAX and CuPy import with their from_dlpack, sharing its memory. Made by \
ferry.from_dlpack, ferry's file and Arrow functions, or Rust code; not constructible from Python.";

/// The type object, made once per process on first use.
static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `ferry.HostArray`, made on first use.
pub(crate) fn host_array_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    TYPE.get_or_try_init(py, || make_type(py))
        .map(|t| t.bind(py))
}

/// ferry's DLPack exchange table, its functions instantiated for this class.
static EXCHANGE: Table = Table::of::<PyHostArray>();

impl Exchanged for PyHostArray {
    const NAME: &'static str = "ferry.HostArray";

    #[inline]
    fn lookup<'a>(object: &'a Bound<'_, PyAny>) -> Option<&'a PyHostArray> {
        object.cast::<PyHostArray>().ok().map(|ours| ours.host())
    }

    #[inline]
    fn array(&self) -> &HostArray {
        &self.array
    }

    #[inline]
    fn loans(&self) -> &Loans {
        &self.loans
    }

    #[inline]
    fn wrap(py: Python<'_>, array: HostArray) -> PyResult<Bound<'_, PyAny>> {
        Ok(PyHostArray::new(array).into_pyobject(py)?.into_any())
    }
}

/// Builds the type from its spec and sets its class attribute `__dlpack_c_exchange_api__`.
fn make_type(py: Python<'_>) -> PyResult<Py<PyType>> {
    // CPython keeps pointers into the method and attribute tables for the life of the type,
    // which is the life of the process (`TYPE` never drops it): they are leaked on purpose,
    // once.
    let methods: &'static mut [ffi::PyMethodDef] = Box::leak(method_table().into_boxed_slice());
    let getsets: &'static mut [ffi::PyGetSetDef] = Box::leak(getset_table().into_boxed_slice());
    let mut slots = [
        slot(
            ffi::Py_tp_dealloc,
            dealloc as ffi::destructor as *mut c_void,
        ),
        slot(ffi::Py_tp_repr, repr as ffi::reprfunc as *mut c_void),
        slot(ffi::Py_mp_length, length as ffi::lenfunc as *mut c_void),
        slot(ffi::Py_tp_methods, methods.as_mut_ptr().cast()),
        slot(ffi::Py_tp_getset, getsets.as_mut_ptr().cast()),
        slot(ffi::Py_tp_doc, DOC.as_ptr().cast_mut().cast()),
        slot(0, std::ptr::null_mut()),
    ];
    let flags = (ffi::Py_TPFLAGS_DEFAULT
        | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION
        | ffi::Py_TPFLAGS_IMMUTABLETYPE) as c_uint;
    // SAFETY: the slots end with a zeroed one, and every function has the signature of its
    // slot; the name is static, and the tables are leaked above (the type lives in `TYPE`,
    // never dropped); the flags leave no `tp_new` and no subclasses, so only `into_pyobject`
    // makes instances (with `raw::new_instance`), and `dealloc` frees them with
    // `raw::dealloc_instance`, both for `PyHostArray`.
    let class = unsafe { raw::new_type::<PyHostArray>(py, c"ferry.HostArray", flags, &mut slots) }?;
    raw::set_class_attribute(
        &class,
        "__dlpack_c_exchange_api__",
        exchange_api_capsule(py, &EXCHANGE)?.as_any(),
    )?;
    Ok(class.unbind())
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

// SAFETY: `type_object_raw` returns `ferry.HostArray`, and `PyObject_TypeCheck` against it
// accepts only its own instances (it has no subclasses), which hold an initialised
// `PyHostArray` at the layout `raw::new_type::<PyHostArray>` gives them (the module's
// invariant).
unsafe impl PyTypeInfo for PyHostArray {
    /// `ferry.HostArray`. Panics only when the type cannot be made at all (out of memory);
    /// the `ferry` module makes it on import, so an imported module never does.
    fn type_object_raw(py: Python<'_>) -> *mut ffi::PyTypeObject {
        match host_array_type(py) {
            Ok(class) => class.as_type_ptr(),
            Err(error) => panic!("ferry.HostArray's type could not be made: {error}"),
        }
    }
}

impl<'py> IntoPyObject<'py> for PyHostArray {
    type Target = PyHostArray;
    type Output = Bound<'py, PyHostArray>;
    type Error = PyErr;

    /// A new `ferry.HostArray` object holding `self`.
    #[inline]
    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyHostArray>> {
        let class = host_array_type(py)?;
        // SAFETY: the type was made by `raw::new_type::<PyHostArray>` (`make_type`).
        let object = unsafe { raw::new_instance(py, class, self) }
            .ok_or_else(|| PyMemoryError::new_err("no memory for a ferry.HostArray"))?;
        // SAFETY: a new instance of the type.
        Ok(unsafe { object.cast_into_unchecked() })
    }
}

/// `tp_dealloc`: drops the payload (which may run a producer's DLPack deleter; in a
/// subinterpreter the drop waits for the main interpreter, `deferred`), frees the memory and
/// releases the instance's reference to the type, with the error indicator put aside
/// (`raw::dealloc_instance`); a panic becomes an unraisable error.
unsafe extern "C" fn dealloc(object: *mut ffi::PyObject) {
    // SAFETY: CPython calls this with the GIL held, once, on an instance of the type (made by
    // `raw::new_type::<PyHostArray>`) whose reference count reached zero.
    unsafe {
        raw::dealloc_instance::<PyHostArray>(object, |py, host| {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| deferred::release(py, host))) {
                // The payload's own drop may panic too: this is a C callback.
                ferry_core::drop_without_unwinding(payload);
                PyRuntimeError::new_err("ferry panicked while releasing a HostArray")
                    .write_unraisable(py, None);
            }
        });
    }
}

/// The payload of `object`, after checking its type.
///
/// # Safety
///
/// The GIL is held and `object` is a live object, borrowed for `'a`.
unsafe fn payload<'a>(py: Python<'_>, object: *mut ffi::PyObject) -> PyResult<&'a PyHostArray> {
    // SAFETY: per the contract.
    let object = unsafe { Borrowed::from_ptr(py, object) };
    let host = object.cast::<PyHostArray>()?;
    // SAFETY: an instance (checked) of the type `raw::new_type::<PyHostArray>` made: its
    // payload lives while the object does, which the caller's borrow guarantees for `'a`.
    Ok(unsafe { raw::payload::<PyHostArray>(host.as_ptr()) })
}

/// `__repr__`.
unsafe extern "C" fn repr(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    entry("HostArray.__repr__", std::ptr::null_mut(), |py| {
        // SAFETY: CPython calls the slot with the GIL held on a live object.
        let host = unsafe { payload(py, object) }?;
        Ok(PyString::new(py, &host.repr()).into_ptr())
    })
}

/// `__len__`: the length of the first axis.
unsafe extern "C" fn length(object: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    entry("HostArray.__len__", -1, |py| {
        // SAFETY: CPython calls the slot with the GIL held on a live object.
        let host = unsafe { payload(py, object) }?;
        let first = host.array().shape().first().copied();
        let first = first.ok_or_else(|| PyTypeError::new_err("len() of a 0-d array"))?;
        // An axis length fits `isize` (a HostArray's element count does).
        Ok(ffi::Py_ssize_t::try_from(first).unwrap_or(ffi::Py_ssize_t::MAX))
    })
}

/// An attribute getter: the value from the payload.
type Getter = for<'py> fn(Python<'py>, &PyHostArray) -> PyResult<Bound<'py, PyAny>>;

/// The attributes (read-only), each a [`Getter`] passed to [`get`] as the closure pointer.
fn getset_table() -> Vec<ffi::PyGetSetDef> {
    fn def(name: &'static CStr, doc: &'static CStr, getter: Getter) -> ffi::PyGetSetDef {
        ffi::PyGetSetDef {
            name: name.as_ptr(),
            get: Some(get),
            set: None,
            doc: doc.as_ptr(),
            closure: getter as *mut c_void,
        }
    }
    fn int(py: Python<'_>, n: usize) -> PyResult<Bound<'_, PyAny>> {
        Ok(n.into_pyobject(py)?.into_any())
    }
    vec![
        def(c"shape", c"Length of each axis.", |py, h| {
            PyTuple::new(py, h.array().shape()).map(Bound::into_any)
        }),
        def(
            c"strides",
            c"Step of each axis in elements (NumPy's `strides` divided by `itemsize`).",
            |py, h| PyTuple::new(py, h.array().strides()).map(Bound::into_any),
        ),
        def(c"dtype", c"The dtype, by NumPy's name.", |py, h| {
            Ok(PyString::new(py, &dtype_name(h.array().dtype())).into_any())
        }),
        def(c"ndim", c"Number of axes.", |py, h| {
            int(py, h.array().ndim())
        }),
        def(c"size", c"Number of elements.", |py, h| {
            int(py, h.array().len())
        }),
        def(
            c"nbytes",
            c"Bytes the elements take when packed.",
            |py, h| int(py, h.array().nbytes()),
        ),
        def(
            c"readonly",
            c"Whether ferry refuses to write through this array (and exports carry READ_ONLY).",
            |py, h| {
                Ok(h.array()
                    .is_read_only()
                    .into_pyobject(py)?
                    .to_owned()
                    .into_any())
            },
        ),
        def(
            c"data_ptr",
            c"Address of element [0, ..., 0], to check that consumers share the memory.",
            |py, h| int(py, h.array().as_ptr() as usize),
        ),
        def(
            c"copies",
            c"How many copies ferry made to produce this array (0 for views of foreign memory).",
            |py, h| int(py, h.array().copies()),
        ),
        ffi::PyGetSetDef::default(),
    ]
}

/// The getter every attribute shares; `closure` says which [`Getter`] to call.
unsafe extern "C" fn get(object: *mut ffi::PyObject, closure: *mut c_void) -> *mut ffi::PyObject {
    entry("a HostArray attribute", std::ptr::null_mut(), |py| {
        // SAFETY: `getset_table` put a `Getter` in every entry's closure, and a data pointer
        // holds a function pointer on every platform CPython runs on.
        let getter = unsafe { std::mem::transmute::<*mut c_void, Getter>(closure) };
        // SAFETY: CPython calls getters with the GIL held on a live object.
        let host = unsafe { payload(py, object) }?;
        getter(py, host).map(Bound::into_ptr)
    })
}

/// A method without arguments: `$body(&Bound<PyHostArray>)` behind a `METH_NOARGS` C function.
macro_rules! no_arguments {
    ($name:ident, $what:literal, $body:expr) => {
        unsafe extern "C" fn $name(
            object: *mut ffi::PyObject,
            _unused: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            entry($what, std::ptr::null_mut(), |py| {
                // SAFETY: CPython calls methods with the GIL held on a live `self`.
                let object = unsafe { Borrowed::from_ptr(py, object) };
                let host = object.cast::<PyHostArray>()?;
                $body(&*host).map(Bound::into_ptr)
            })
        }
    };
}

no_arguments!(tobytes, "HostArray.tobytes", PyHostArray::tobytes);
no_arguments!(copy, "HostArray.copy", PyHostArray::copy);
no_arguments!(numpy, "HostArray.numpy", PyHostArray::numpy);
no_arguments!(torch, "HostArray.torch", PyHostArray::torch);
#[cfg(feature = "arrow")]
no_arguments!(arrow_c_schema, "HostArray.__arrow_c_schema__", arrow_schema);

/// `__arrow_c_schema__`'s body.
#[cfg(feature = "arrow")]
fn arrow_schema<'py>(host: &Bound<'py, PyHostArray>) -> PyResult<Bound<'py, PyAny>> {
    crate::arrow::schema_capsule(host.py(), host.host().array()).map(Bound::into_any)
}

/// `astype(dtype)`.
unsafe extern "C" fn astype(
    object: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry("HostArray.astype", std::ptr::null_mut(), |py| {
        // SAFETY: CPython's fast calling convention (see `raw::one_argument`).
        let (host, dtype) = unsafe {
            let host = payload(py, object)?;
            let dtype = raw::one_argument(py, "astype", c"dtype", args, nargs, kwnames)?;
            (host, dtype)
        };
        let dtype =
            dtype.ok_or_else(|| PyTypeError::new_err("astype() missing its argument 'dtype'"))?;
        let name = dtype.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "astype(): dtype must be a str such as 'float32', got {}",
                &*dtype
            ))
        })?;
        host.astype(py, &name.to_cow()?).map(Bound::into_ptr)
    })
}

/// `__arrow_c_array__(requested_schema=None)`.
#[cfg(feature = "arrow")]
unsafe extern "C" fn arrow_c_array(
    object: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry("HostArray.__arrow_c_array__", std::ptr::null_mut(), |py| {
        // SAFETY: CPython's fast calling convention (see `raw::one_argument`).
        let host = unsafe {
            let host = payload(py, object)?;
            // The requested schema is ignored, as the interface allows.
            raw::one_argument(
                py,
                "__arrow_c_array__",
                c"requested_schema",
                args,
                nargs,
                kwnames,
            )?;
            host
        };
        crate::arrow::array_capsules(py, host.array()).map(Bound::into_ptr)
    })
}

/// A method definition.
fn method(
    name: &'static CStr,
    flags: c_int,
    meth: ffi::PyMethodDefPointer,
    doc: &'static CStr,
) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: meth,
        ml_flags: flags,
        ml_doc: doc.as_ptr(),
    }
}

/// The methods: the DLPack protocol's (see `method.rs`) and NumPy's conveniences.
fn method_table() -> Vec<ffi::PyMethodDef> {
    let keywords = ffi::METH_FASTCALL | ffi::METH_KEYWORDS;
    #[cfg_attr(not(feature = "arrow"), allow(unused_mut))]
    let mut table = vec![
        method::DLPACK,
        method::DLPACK_DEVICE,
        method(
            c"tobytes",
            ffi::METH_NOARGS,
            ffi::PyMethodDefPointer { PyCFunction: tobytes },
            c"tobytes($self, /)\n--\n\nThe elements as bytes in row-major order (NumPy's `tobytes()`).",
        ),
        method(
            c"copy",
            ffi::METH_NOARGS,
            ffi::PyMethodDefPointer { PyCFunction: copy },
            c"copy($self, /)\n--\n\nA row-major copy in fresh, writable memory.",
        ),
        method(
            c"astype",
            keywords,
            ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: astype },
            c"astype($self, /, dtype)\n--\n\nThe values converted to another dtype (saturating \
like NumPy's `astype` for floats to integers; complex to real is refused).",
        ),
        method(
            c"numpy",
            ffi::METH_NOARGS,
            ffi::PyMethodDefPointer { PyCFunction: numpy },
            c"numpy($self, /)\n--\n\nA NumPy array sharing this memory (`numpy.from_dlpack(self)`).",
        ),
        method(
            c"torch",
            ffi::METH_NOARGS,
            ffi::PyMethodDefPointer { PyCFunction: torch },
            c"torch($self, /)\n--\n\nA PyTorch tensor sharing this memory \
(`torch.from_dlpack(self)`), or sharing a row-major copy when PyTorch cannot hold the array as \
it is (negative strides, or read-only).",
        ),
    ];
    #[cfg(feature = "arrow")]
    table.extend([
        method(
            c"__arrow_c_schema__",
            ffi::METH_NOARGS,
            ffi::PyMethodDefPointer {
                PyCFunction: arrow_c_schema,
            },
            c"__arrow_c_schema__($self, /)\n--\n\nThe Arrow PyCapsule interface: the type of \
the column this array exports as, as an \"arrow_schema\" capsule.",
        ),
        method(
            c"__arrow_c_array__",
            keywords,
            ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: arrow_c_array,
            },
            c"__arrow_c_array__($self, /, requested_schema=None)\n--\n\nThe Arrow PyCapsule \
interface: (schema, array) capsules of the column, sharing this array's memory \
(requested_schema is ignored, as the interface allows).",
        ),
    ]);
    table.push(ffi::PyMethodDef::zeroed());
    table
}
