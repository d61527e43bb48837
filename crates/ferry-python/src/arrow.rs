//! The Arrow PyCapsule interface of the Python module, on host arrays: the capsules of
//! `HostArray.__arrow_c_schema__` and `__arrow_c_array__` (a 1-D array as a primitive column, a
//! higher one as an `arrow.fixed_shape_tensor` column whose rows are the first axis), which
//! pyarrow and Polars take without copying, and the imports of anything with
//! `__arrow_c_array__` (pyarrow and nanoarrow arrays) the same way, for `ferry.from_arrow` and
//! the argument types (which make their objects: `lib.rs`, `extract.rs`).

use std::ffi::{CStr, c_void};

use ferry_arrow::arrow_array::{self, ArrayRef, RecordBatch};
use ferry_arrow::arrow_schema::{DataType, Field, FieldRef};
use ferry_arrow::ffi::{FFI_ArrowArray, FFI_ArrowArrayStream, FFI_ArrowSchema};
use ferry_arrow::{ColumnKind, TensorColumn};
use ferry_core::{Access, CopyPolicy, HostArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};
use pyo3::{PyErr, intern};

use crate::{deferred, lease, raw};

const SCHEMA: &CStr = c"arrow_schema";
const ARRAY: &CStr = c"arrow_array";
const STREAM: &CStr = c"arrow_array_stream";

/// A ferry-arrow error as the Python exception a pyarrow user expects.
pub(crate) fn to_py_err(error: ferry_arrow::Error) -> PyErr {
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
    lease::check_readable(array)?;
    let array = &*exportable(array)?;
    let column = column(array)?;
    let schema = ferry_arrow::ffi::export_schema(&column).map_err(to_py_err)?;
    let data = ferry_arrow::ffi::export_array(&column).map_err(to_py_err)?;
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

/// Imports the field and array behind anything with `__arrow_c_array__`, taking the array
/// struct out of its capsule (the capsule's `release` becomes NULL, as the PyCapsule interface
/// says).
fn import_field_array(obj: &Bound<'_, PyAny>) -> PyResult<(FieldRef, ArrayRef)> {
    let py = obj.py();
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
    unsafe { ferry_arrow::ffi::import_array(taken, &*schema_ptr) }.map_err(to_py_err)
}

/// The message for an object that speaks no Arrow protocol ferry reads.
fn no_arrow_protocol(obj: &Bound<'_, PyAny>, wanted: &str) -> PyResult<PyErr> {
    Ok(PyTypeError::new_err(format!(
        "{} has no {wanted}; pass a pyarrow Array, ChunkedArray, RecordBatch, Table or RecordBatchReader, a Polars Series or DataFrame, or another object with the Arrow PyCapsule interface",
        obj.get_type().name()?
    )))
}

/// Imports the column behind anything with `__arrow_c_array__`.
fn import_column(obj: &Bound<'_, PyAny>) -> PyResult<TensorColumn> {
    if !obj.hasattr(intern!(obj.py(), "__arrow_c_array__"))? {
        return Err(no_arrow_protocol(
            obj,
            "__arrow_c_array__ (for a ChunkedArray: .combine_chunks(); for a Polars Series: .to_arrow())",
        )?);
    }
    let (field, array) = import_field_array(obj)?;
    TensorColumn::try_new(field, array).map_err(to_py_err)
}

/// Takes the C stream out of what `__arrow_c_stream__` returns (the capsule's `release`
/// becomes NULL) and reads it.
fn import_stream(obj: &Bound<'_, PyAny>) -> PyResult<ferry_arrow::ffi::ImportedStream> {
    let capsule = obj.call_method0(intern!(obj.py(), "__arrow_c_stream__"))?;
    if !raw::capsule_is_valid(&capsule, STREAM) {
        return Err(PyTypeError::new_err(format!(
            "__arrow_c_stream__ returned {} where a {STREAM:?} capsule belongs",
            capsule.get_type().name()?
        )));
    }
    let stream_ptr = raw::capsule_pointer(&capsule, STREAM)?.cast::<FFI_ArrowArrayStream>();
    // SAFETY: a valid "arrow_array_stream" capsule points at a live ArrowArrayStream struct
    // that the consumer may move out; an empty struct (release = NULL) left behind marks it
    // moved, so the capsule's destructor does nothing.
    let taken = unsafe { std::ptr::replace(stream_ptr, FFI_ArrowArrayStream::empty()) };
    // SAFETY: the PyCapsule interface promises a stream that keeps the C stream interface (its
    // arrays of the type its schema gives, immutable while not released); a producer that
    // breaks it is a trust boundary (ARCHITECTURE.md), as for `__arrow_c_array__`.
    unsafe { ferry_arrow::ffi::import_stream(taken) }.map_err(to_py_err)
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
    /// A stream's chunks, one import each.
    Chunks(Vec<Imported>),
    /// A record batch's (or a table's) columns by name, in order.
    Columns(Vec<(String, Imported)>),
}

/// One column's import: the array, or one array per row of a variable-shape column.
fn imported(column: &TensorColumn) -> PyResult<Imported> {
    match column.kind() {
        ColumnKind::VariableShapeTensor => column
            .to_host_tensors()
            .map(Imported::PerRow)
            .map_err(to_py_err),
        _ => column.to_host().map(Imported::One).map_err(to_py_err),
    }
}

/// One column's chunks from a stream: one import per chunk, or with `combine` one import: the
/// chunks joined (a copy only when there are two or more; a variable-shape column's rows are
/// only gathered into one list, without a copy).
fn imported_chunks(field: &Field, chunks: &[TensorColumn], combine: bool) -> PyResult<Imported> {
    let variable = field.extension_type_name() == Some(ferry_arrow::VARIABLE_SHAPE_TENSOR);
    match (combine, variable) {
        (false, _) => chunks
            .iter()
            .map(imported)
            .collect::<PyResult<_>>()
            .map(Imported::Chunks),
        (true, false) => ferry_arrow::combine_chunks(field, chunks)
            .map(Imported::One)
            .map_err(to_py_err),
        (true, true) => {
            let mut rows = Vec::new();
            for chunk in chunks {
                rows.extend(chunk.to_host_tensors().map_err(to_py_err)?);
            }
            Ok(Imported::PerRow(rows))
        }
    }
}

/// What `ferry.from_arrow` imports: from `__arrow_c_array__` (preferred where an object has
/// both) the array, one array per row of a variable-shape column, or a struct array's (a
/// record batch's) columns by name; from `__arrow_c_stream__` (a ChunkedArray, a Table, a
/// RecordBatchReader, a Polars Series or DataFrame) the same per chunk, or with `combine`
/// joined over the chunks. Every column's type is checked before a chunk is read.
pub(crate) fn import_arrays(obj: &Bound<'_, PyAny>, combine: bool) -> PyResult<Imported> {
    let py = obj.py();
    if obj.hasattr(intern!(py, "__arrow_c_array__"))? {
        let (field, array) = import_field_array(obj)?;
        if !matches!(field.data_type(), DataType::Struct(_)) {
            return imported(&TensorColumn::try_new(field, array).map_err(to_py_err)?);
        }
        let columns = ferry_arrow::ffi::split_struct(&field, &array).map_err(to_py_err)?;
        check_unique_names(columns.iter().map(TensorColumn::name))?;
        return columns
            .iter()
            .map(|c| Ok((c.name().to_owned(), imported(c)?)))
            .collect::<PyResult<_>>()
            .map(Imported::Columns);
    }
    if !obj.hasattr(intern!(py, "__arrow_c_stream__"))? {
        return Err(no_arrow_protocol(
            obj,
            "__arrow_c_array__ or __arrow_c_stream__",
        )?);
    }
    let mut stream = import_stream(obj)?;
    let record_batches = stream.is_record_batches();
    let schema = arrow_array::RecordBatchReader::schema(&stream);
    if record_batches {
        check_unique_names(schema.fields().iter().map(|f| f.name().as_str()))?;
    }
    for field in schema.fields() {
        // Refused before a chunk is read: a column ferry cannot read.
        let empty = arrow_array::new_empty_array(field.data_type());
        TensorColumn::try_new(field.clone(), empty).map_err(to_py_err)?;
    }
    let mut chunks: Vec<Vec<TensorColumn>> = vec![Vec::new(); schema.fields().len()];
    for batch in &mut stream {
        let batch = batch.map_err(|e| to_py_err(ferry_arrow::Error::from_arrow(e)))?;
        for ((field, array), column_chunks) in
            schema.fields().iter().zip(batch.columns()).zip(&mut chunks)
        {
            column_chunks
                .push(TensorColumn::try_new(field.clone(), array.clone()).map_err(to_py_err)?);
        }
    }
    let mut columns = schema
        .fields()
        .iter()
        .zip(&chunks)
        .map(|(field, column_chunks)| {
            Ok((
                field.name().clone(),
                imported_chunks(field, column_chunks, combine)?,
            ))
        })
        .collect::<PyResult<Vec<_>>>()?;
    match (record_batches, columns.pop()) {
        (false, Some((_, one))) => Ok(one),
        (_, last) => {
            columns.extend(last);
            Ok(Imported::Columns(columns))
        }
    }
}

/// An Arrow array of any type taken from Python for a record batch, with its field.
pub(crate) struct ArrowColumn {
    field: FieldRef,
    array: ArrayRef,
}

/// The field and array behind anything with `__arrow_c_array__`, of any type (strings,
/// structs): the columns `ferry.record_batch` passes through as they are.
pub(crate) fn import_any_column(obj: &Bound<'_, PyAny>) -> PyResult<ArrowColumn> {
    let (field, array) = import_field_array(obj)?;
    Ok(ArrowColumn { field, array })
}

/// What a column of `ferry.record_batch` is made from.
pub(crate) enum BatchColumn<'a> {
    /// A host array, exported as [`array_capsules`] exports one.
    Host(&'a HostArray),
    /// An Arrow array, as it is.
    Arrow(&'a ArrowColumn),
}

/// Refuses a batch with two columns of one name, which a dict of columns would merge.
pub(crate) fn check_unique_names<'a>(names: impl IntoIterator<Item = &'a str>) -> PyResult<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(PyValueError::new_err(format!(
                "two columns are named {name:?}; rename one first (pyarrow: table.rename_columns), as ferry returns the columns as a dict"
            )));
        }
    }
    Ok(())
}

/// The columns of a record batch that Python hands to ferry (`ferry.record_batch`): every
/// host array checked readable and exported as [`array_capsules`] exports an array (memory
/// ferry owns that something else holds too goes as a copy), every Arrow array as it is,
/// renamed.
pub(crate) fn batch_of(columns: &[(&str, BatchColumn<'_>)]) -> PyResult<RecordBatch> {
    check_unique_names(columns.iter().map(|(name, _)| *name))?;
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    for (name, column) in columns {
        if name.contains('\0') {
            return Err(PyValueError::new_err(format!(
                "column name {name:?} holds a NUL character, which the Arrow C Data Interface cannot carry"
            )));
        }
        match column {
            BatchColumn::Host(array) => {
                lease::check_readable(array)?;
                let column =
                    TensorColumn::from_batch(name, &*exportable(array)?).map_err(to_py_err)?;
                fields.push(column.field().clone());
                arrays.push(column.array().clone());
            }
            BatchColumn::Arrow(column) => {
                let field = column.field.as_ref().clone().with_name(*name);
                fields.push(std::sync::Arc::new(field));
                arrays.push(column.array.clone());
            }
        }
    }
    let schema = std::sync::Arc::new(ferry_arrow::arrow_schema::Schema::new(fields));
    RecordBatch::try_new(schema, arrays).map_err(|e| to_py_err(e.into()))
}

/// `array`, or a copy of it where memory ferry owns is also held elsewhere (and so may be lent
/// to a writer: `.torch()`, a bare `DLTensor`). Arrow arrays are immutable. (A producer's
/// writable memory, `Access::Shared`, is shared as its producer allows: a trust boundary.)
fn exportable(array: &HostArray) -> PyResult<std::borrow::Cow<'_, HostArray>> {
    if array.access() == Access::Exclusive && !array.owner_is_unique() {
        return array
            .to_contiguous(CopyPolicy::Always)
            .map(std::borrow::Cow::Owned)
            .map_err(crate::error::to_py_err);
    }
    Ok(std::borrow::Cow::Borrowed(array))
}

/// `__arrow_c_schema__` of a record batch: its schema as a struct field.
pub(crate) fn batch_schema_capsule<'py>(
    py: Python<'py>,
    batch: &RecordBatch,
) -> PyResult<Bound<'py, PyCapsule>> {
    let schema =
        FFI_ArrowSchema::try_from(batch.schema().as_ref()).map_err(|e| to_py_err(e.into()))?;
    PyCapsule::new_with_value(py, schema, SCHEMA)
}

/// `__arrow_c_array__` of a record batch: `(schema capsule, array capsule)` of one struct
/// array sharing the batch's buffers.
pub(crate) fn batch_array_capsules<'py>(
    py: Python<'py>,
    batch: &RecordBatch,
) -> PyResult<Bound<'py, PyTuple>> {
    let schema = batch_schema_capsule(py, batch)?;
    let data = arrow_array::Array::into_data(arrow_array::StructArray::from(batch.clone()));
    let data = PyCapsule::new_with_value(py, ReleasedInMain(FFI_ArrowArray::new(&data)), ARRAY)?;
    PyTuple::new(py, [schema.into_any(), data.into_any()])
}

/// `__arrow_c_stream__` of a record batch: an `"arrow_array_stream"` capsule of a stream of
/// this one batch (what `pyarrow.table`, `polars.DataFrame` and DuckDB ask for).
pub(crate) fn batch_stream_capsule<'py>(
    py: Python<'py>,
    batch: &RecordBatch,
) -> PyResult<Bound<'py, PyCapsule>> {
    let reader = arrow_array::RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
    let stream = ferry_arrow::ffi::export_stream(reader).map_err(to_py_err)?;
    PyCapsule::new_with_value(py, StreamReleasedInMain(stream), STREAM)
}

/// An exported stream in its capsule (transparent, as [`ReleasedInMain`]): one nobody took is
/// released in the main interpreter.
#[repr(transparent)]
struct StreamReleasedInMain(FFI_ArrowArrayStream);

impl Drop for StreamReleasedInMain {
    fn drop(&mut self) {
        let stream = std::mem::replace(&mut self.0, FFI_ArrowArrayStream::empty());
        // SAFETY: the value is dropped only by its capsule's destructor, which CPython runs
        // with the GIL held (pyo3 leaks it, undropped, if the capsule cannot be made).
        let py = unsafe { Python::assume_attached() };
        deferred::release(py, stream);
    }
}
