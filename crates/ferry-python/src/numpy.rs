//! NumPy's arrays read from their C structs, as rust-numpy reads them: an exact
//! `numpy.ndarray` argument becomes a [`HostArray`] sharing its memory without the
//! `__dlpack__` call and capsule the DLPack path costs (about 0.4 µs a call). Only the fields
//! NumPy's ABI has kept since 1.x are read (`PyArrayObject_fields` up to `flags`, and
//! `PyArray_Descr` up to `type_num`), and only for dtypes with a fixed native layout; anything
//! else (subclasses, byte-swapped, object, string, structured, datetime, long double, user
//! dtypes, strides that are not whole elements) returns `None` and takes the DLPack path.

use std::ffi::{c_char, c_int, c_long, c_ulong, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, Ordering};

use ferry_core::{Access, DType, HostArray, MemoryKind, RawLayout};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use pyo3::{ffi, intern};

/// The leading fields of NumPy's `PyArrayObject_fields`, unchanged from NumPy 1.x to 2.x.
#[repr(C)]
struct ArrayFields {
    head: ffi::PyObject,
    data: *mut u8,
    nd: c_int,
    dimensions: *const isize,
    strides: *const isize,
    base: *mut c_void,
    descr: *const DescrFields,
    flags: c_int,
}

/// The leading fields of NumPy's `PyArray_Descr`, unchanged from NumPy 1.x to 2.x (the fields
/// after `type_num` differ between them and are not read).
#[repr(C)]
struct DescrFields {
    head: ffi::PyObject,
    typeobj: *mut c_void,
    kind: c_char,
    type_char: c_char,
    byteorder: c_char,
    former_flags: c_char,
    type_num: c_int,
}

/// Ranks whose layout is converted on the stack (higher ones use the heap).
const INLINE_AXES: usize = 8;

/// `NPY_ARRAY_WRITEABLE`.
const WRITEABLE: c_int = 0x0400;

/// NumPy's `PyArray_Type`, once an argument showed NumPy is loaded (a static type of NumPy's
/// extension module, which is never unloaded).
static NDARRAY: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());

/// NumPy's own `PyArray_Type` if NumPy is loaded (never imports NumPy: an object can only be
/// an ndarray when it is). Taken from NumPy's C API table (`_ARRAY_API`, entry 2), as
/// rust-numpy and every C extension take it, not from the `numpy.ndarray` attribute, which
/// Python code can rebind to a type whose objects are not NumPy arrays.
fn ndarray_type(py: Python<'_>) -> Option<*mut ffi::PyTypeObject> {
    let known = NDARRAY.load(Ordering::Acquire);
    if !known.is_null() {
        return Some(known);
    }
    let modules = py
        .import(intern!(py, "sys"))
        .ok()?
        .getattr(intern!(py, "modules"))
        .ok()?;
    modules.get_item(intern!(py, "numpy")).ok()?;
    // NumPy 2's module, then 1.x's (where `numpy._core` does not exist).
    fn table_of<'py>(py: Python<'py>, module: &str) -> Option<Bound<'py, PyCapsule>> {
        py.import(module)
            .and_then(|m| m.getattr(intern!(py, "_ARRAY_API")))
            .ok()
            .and_then(|api| api.cast_into::<PyCapsule>().ok())
    }
    let api = table_of(py, "numpy._core._multiarray_umath")
        .or_else(|| table_of(py, "numpy.core.multiarray"))?;
    let table = api
        .pointer_checked(None)
        .ok()?
        .cast::<*mut ffi::PyTypeObject>();
    // SAFETY: `_ARRAY_API` is NumPy's C API table, an array of pointers whose entry 2 is
    // `&PyArray_Type` in every NumPy version (`__multiarray_api.h`); the table is static in
    // NumPy's extension module.
    let ptr = unsafe { *table.as_ptr().add(2) };
    if ptr.is_null() {
        return None;
    }
    NDARRAY.store(ptr, Ordering::Release);
    Some(ptr)
}

/// The owner of memory read through NumPy's struct: a reference to the array. Dropped on a
/// thread that holds the main interpreter's GIL (a pyfunction, ferry's `tp_dealloc`, which runs
/// outside pyo3's bookkeeping), it is released at once; dropped on any other thread (one that
/// never attached, one attached to a subinterpreter), it never waits for the GIL (whose holder
/// may be joining that thread) but is queued for ferry's next call in the main interpreter
/// (`deferred.rs`), or left to the process's exit.
struct ArrayRef(Option<Py<PyAny>>);

impl Drop for ArrayRef {
    fn drop(&mut self) {
        let Some(array) = self.0.take() else { return };
        if crate::raw::thread_holds_gil() {
            // SAFETY: this thread holds the main interpreter's GIL (the running thread state is
            // its own main-interpreter state), so the reference is released now, as pyo3 would
            // on a thread it knows to be attached.
            array.drop_ref(unsafe { Python::assume_attached() });
        } else {
            crate::deferred::release_later(array);
        }
    }
}

/// ferry's dtype for a NumPy type number, where it has a fixed native layout.
fn dtype_of(type_num: c_int) -> Option<DType> {
    let long = |signed| match (std::mem::size_of::<c_long>(), signed) {
        (8, true) => Some(DType::I64),
        (4, true) => Some(DType::I32),
        (8, false) if std::mem::size_of::<c_ulong>() == 8 => Some(DType::U64),
        (4, false) => Some(DType::U32),
        _ => None,
    };
    Some(match type_num {
        0 => DType::Bool,
        1 => DType::I8,
        2 => DType::U8,
        3 => DType::I16,
        4 => DType::U16,
        5 => DType::I32,
        6 => DType::U32,
        7 => return long(true),
        8 => return long(false),
        9 => DType::I64,
        10 => DType::U64,
        11 => DType::F32,
        12 => DType::F64,
        14 => DType::C64,
        15 => DType::C128,
        23 => DType::F16,
        _ => return None,
    })
}

/// The host array over an exact `numpy.ndarray`'s memory (read-only when NumPy's WRITEABLE
/// flag is off, else [`Access::Shared`]: NumPy may write it), holding a reference to the array;
/// `None` for anything else.
#[inline]
pub(crate) fn import_ndarray(obj: &Bound<'_, PyAny>) -> Option<PyResult<HostArray>> {
    // Little-endian hosts, and GIL-enabled builds only: a free-threaded CPython's object
    // header is larger (pyo3's `PyObject` follows it, but without a GIL another thread may
    // reassign `shape` and free the dimensions while they are read), so there every argument
    // takes the DLPack path.
    if !cfg!(target_endian = "little")
        || std::mem::size_of::<ffi::PyObject>() != 2 * std::mem::size_of::<usize>()
    {
        return None;
    }
    let ndarray = ndarray_type(obj.py())?;
    if obj.get_type_ptr() != ndarray {
        return None;
    }
    // SAFETY: `obj` is an instance of exactly `numpy.ndarray` (checked above), whose object
    // struct starts with `PyArrayObject_fields` in every NumPy version: the fields read here
    // are initialised for every array, and with the GIL held (`obj` is bound) nobody changes
    // them while they are read. `descr` points at the array's live dtype object.
    let (fields, descr) = unsafe {
        let fields = &*obj.as_ptr().cast::<ArrayFields>();
        (fields, &*fields.descr)
    };
    let dtype = dtype_of(descr.type_num)?;
    if descr.byteorder == b'>' as c_char {
        return None;
    }
    let itemsize = dtype.size_in_bytes()? as isize;
    let nd = usize::try_from(fields.nd).ok()?;
    let (dims, byte_strides): (&[isize], &[isize]) = if nd == 0 {
        (&[], &[])
    } else {
        // SAFETY: an array of `nd` axes has `nd` dimensions and `nd` strides at these
        // addresses (NumPy allocates them with the array), read with the GIL held.
        unsafe {
            (
                std::slice::from_raw_parts(fields.dimensions, nd),
                std::slice::from_raw_parts(fields.strides, nd),
            )
        }
    };
    let access = if fields.flags & WRITEABLE != 0 {
        Access::Shared
    } else {
        Access::ReadOnly
    };
    let data = fields.data.cast_const();
    // The layout in elements, on the stack for the common ranks.
    let mut shape = [0usize; INLINE_AXES];
    let mut strides = [0isize; INLINE_AXES];
    let (mut shape_heap, mut strides_heap);
    let (shape, strides) = if nd <= INLINE_AXES {
        (&mut shape[..nd], &mut strides[..nd])
    } else {
        shape_heap = vec![0usize; nd];
        strides_heap = vec![0isize; nd];
        (&mut shape_heap[..], &mut strides_heap[..])
    };
    for axis in 0..nd {
        if byte_strides[axis] % itemsize != 0 {
            return None;
        }
        shape[axis] = usize::try_from(dims[axis]).ok()?;
        strides[axis] = byte_strides[axis] / itemsize;
    }
    let layout = RawLayout {
        data,
        dtype,
        shape,
        strides,
        memory: MemoryKind::Cpu,
        access,
    };
    // The array keeps its memory alive (its own buffer, or its `base` chain's).
    let owner: ferry_core::Owner = Arc::new(ArrayRef(Some(obj.clone().unbind())));
    // SAFETY: every element the array's dimensions and strides reach lies in its buffer,
    // which stays valid while the array object lives, and `owner` holds a reference to it
    // (NumPy refuses `resize` while other references exist; `resize(refcheck=False)` is NumPy's
    // own documented way to break that, as it breaks every NumPy view). The access is
    // ReadOnly when NumPy says nobody may write, else Shared: NumPy and Python code may write
    // it, and ferry never does.
    Some(unsafe { HostArray::from_raw_layout(layout, owner) }.map_err(crate::error::to_py_err))
}
