//! The Arrow PyCapsule interface of the Python module, on host arrays: the capsules of
//! `HostArray.__arrow_c_schema__` and `__arrow_c_array__` (a 1-D array as a primitive column, a
//! higher one as an `arrow.fixed_shape_tensor` column whose rows are the first axis), which
//! pyarrow and Polars take without copying, and the imports of anything with
//! `__arrow_c_array__` (pyarrow and nanoarrow arrays) the same way, for `ferry.from_arrow` and
//! the argument types (which make their objects: `lib.rs`, `extract.rs`).

use std::ffi::{CStr, c_void};

use ferry_arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use ferry_arrow::{ColumnKind, TensorColumn};
use ferry_core::{Access, CopyPolicy, HostArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};
use pyo3::{PyErr, intern};

use crate::{deferred, lease, raw};

const SCHEMA: &CStr = c"arrow_schema";
const ARRAY: &CStr = c"arrow_array";

/// A ferry-arrow error as the Python exception a pyarrow user expects.
fn to_py_err(error: ferry_arrow::Error) -> PyErr {
    use ferry_arrow::Error;
    let message = error.to_string();
    match error {
        Error::Core(core) => crate::error::to_py_err(core),
        Error::UnsupportedDtype { .. } | Error::UnsupportedArrowType { .. } => {
            PyTypeError::new_err(message)
        }
        _ => PyValueError::new_err(message),
    }
}

/// The column `array` is exported as (no copy unless its layout or dtype needs one).
fn column(array: &HostArray) -> PyResult<TensorColumn> {
    TensorColumn::from_batch("", array).map_err(to_py_err)
}

/// `__arrow_c_schema__`: the column's field as an `"arrow_schema"` capsule.
pub(crate) fn schema_capsule<'py>(
    py: Python<'py>,
    array: &HostArray,
) -> PyResult<Bound<'py, PyCapsule>> {
    lease::check_readable(array)?;
    let schema = ferry_arrow::ffi::export_schema(&column(array)?).map_err(to_py_err)?;
    // The capsule owns the struct; dropping it calls `release` unless a consumer moved it out
    // (which sets `release` to NULL in place).
    PyCapsule::new_with_value(py, schema, SCHEMA)
}

/// `__arrow_c_array__`: `(schema capsule, array capsule)`, the array sharing `array`'s memory.
pub(crate) fn array_capsules<'py>(
    py: Python<'py>,
    array: &HostArray,
) -> PyResult<Bound<'py, PyTuple>> {
    // Arrow arrays are immutable. Memory ferry owns that something else holds as well may be
    // lent to a writer (`.torch()`, a bare `DLTensor`): it goes as a copy. (A producer's
    // writable memory, `Access::Shared`, is shared as its producer allows: a trust boundary.)
    lease::check_readable(array)?;
    let copied;
    let array = if array.access() == Access::Exclusive && !array.owner_is_unique() {
        copied = array
            .to_contiguous(CopyPolicy::Always)
            .map_err(crate::error::to_py_err)?;
        &copied
    } else {
        array
    };
    let column = column(array)?;
    let schema = ferry_arrow::ffi::export_schema(&column).map_err(to_py_err)?;
    let data = ferry_arrow::ffi::export_array(&column);
    let schema = PyCapsule::new_with_value(py, schema, SCHEMA)?;
    let data = PyCapsule::new_with_value(py, ReleasedInMain(data), ARRAY)?;
    PyTuple::new(py, [schema.into_any(), data.into_any()])
}

/// An exported Arrow array in its capsule (the capsule's pointer is the array's: transparent).
/// A consumer moves the array out (leaving `release` NULL); one nobody took is released when
/// the capsule goes, in the main interpreter (`deferred`): its memory may be a Python
/// producer's, whose deleter waits forever when run in a subinterpreter.
#[repr(transparent)]
struct ReleasedInMain(FFI_ArrowArray);

impl Drop for ReleasedInMain {
    fn drop(&mut self) {
        let array = std::mem::replace(&mut self.0, FFI_ArrowArray::empty());
        // SAFETY: the value is dropped only by its capsule's destructor, which CPython runs
        // with the GIL held (pyo3 leaks it, undropped, if the capsule cannot be made).
        let py = unsafe { Python::assume_attached() };
        deferred::release(py, array);
    }
}

/// The pointer a capsule named `name` holds.
fn capsule_pointer(capsule: &Bound<'_, PyAny>, name: &CStr) -> PyResult<*mut c_void> {
    if !raw::capsule_is_valid(capsule, name) {
        return Err(PyTypeError::new_err(format!(
            "__arrow_c_array__ returned {} where a {:?} capsule belongs",
            capsule.get_type().name()?,
            name
        )));
    }
    raw::capsule_pointer(capsule, name)
}

/// Imports the column behind anything with `__arrow_c_array__`, taking the array struct out of
/// its capsule (the capsule's `release` becomes NULL, as the PyCapsule interface says).
fn import_column(obj: &Bound<'_, PyAny>) -> PyResult<TensorColumn> {
    let py = obj.py();
    if !obj.hasattr(intern!(py, "__arrow_c_array__"))? {
        return Err(PyTypeError::new_err(format!(
            "{} has no __arrow_c_array__; pass a pyarrow Array (for a ChunkedArray: .combine_chunks(); for a Polars Series: .to_arrow()) or another object with the Arrow PyCapsule interface",
            obj.get_type().name()?
        )));
    }
    let pair = obj.call_method0(intern!(py, "__arrow_c_array__"))?;
    let (schema, data): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
    let schema_ptr = capsule_pointer(&schema, SCHEMA)?.cast::<FFI_ArrowSchema>();
    let array_ptr = capsule_pointer(&data, ARRAY)?.cast::<FFI_ArrowArray>();
    // SAFETY: a valid "arrow_array" capsule points at a live ArrowArray struct that the
    // consumer may move out; leaving an empty struct (release = NULL) behind marks it moved,
    // so the capsule's destructor does nothing.
    let taken = unsafe { std::ptr::replace(array_ptr, FFI_ArrowArray::empty()) };
    // SAFETY: the schema capsule points at the producer's ArrowSchema describing this array,
    // alive while `schema` is (it is, until the end of this function); the PyCapsule interface
    // promises the pair matches, and Arrow arrays are immutable while exported.
    unsafe { ferry_arrow::ffi::import(taken, &*schema_ptr) }.map_err(to_py_err)
}

/// The one host array behind an Arrow argument (a primitive array, or an
/// `arrow.fixed_shape_tensor` column whose first axis is the rows); a variable-shape tensor
/// column is a `TypeError` (it is one array per row: take it with `ferry.from_arrow`).
pub(crate) fn import_host(obj: &Bound<'_, PyAny>) -> PyResult<HostArray> {
    let column = import_column(obj)?;
    if column.kind() == ColumnKind::VariableShapeTensor {
        return Err(PyTypeError::new_err(
            "an arrow.variable_shape_tensor column is one array per row, not one array; take it as an object and import it with ferry.from_arrow, or pass a fixed-shape column",
        ));
    }
    column.to_host().map_err(to_py_err)
}

/// The host arrays of an Arrow import ([`import_arrays`]).
#[derive(Debug)]
pub(crate) enum Imported {
    /// A primitive array as a 1-D array, an `arrow.fixed_shape_tensor` array as one array whose
    /// first axis is the rows.
    One(HostArray),
    /// An `arrow.variable_shape_tensor` array, one array per row.
    PerRow(Vec<HostArray>),
}

/// What `ferry.from_arrow` imports from anything with `__arrow_c_array__`: the array, or one
/// array per row of a variable-shape tensor column.
pub(crate) fn import_arrays(obj: &Bound<'_, PyAny>) -> PyResult<Imported> {
    let column = import_column(obj)?;
    match column.kind() {
        ColumnKind::VariableShapeTensor => column
            .to_host_tensors()
            .map(Imported::PerRow)
            .map_err(to_py_err),
        _ => column.to_host().map(Imported::One).map_err(to_py_err),
    }
}
