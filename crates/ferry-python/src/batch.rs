//! `ferry.record_batch` and `ferry.RecordBatch`: named arrays as one Arrow record batch that
//! pyarrow, Polars and DuckDB take without copying, as an array (`__arrow_c_array__`, a struct)
//! or a stream (`__arrow_c_stream__`, what `pyarrow.table`, `polars.DataFrame` and DuckDB's
//! scans ask for). The column building and the capsules are `arrow.rs`'s.

use ferry_arrow::arrow_array::RecordBatch;
use ferry_core::HostArray;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyList, PyTuple};

use crate::class::{PyHostArray, PyHostArrayMethods, import_any};
use crate::gate::check_main_interpreter;
use crate::{arrow, deferred};

/// Named arrays of one number of rows as an Arrow record batch: each column shares its
/// array's memory where Arrow can hold it (an `arrow.fixed_shape_tensor` column for arrays of
/// two or more axes, whose first axis is the rows), so `pyarrow.table(batch)`,
/// `polars.DataFrame(batch)` and DuckDB read it without a copy.
#[pyclass(frozen, name = "RecordBatch", module = "ferry")]
pub(crate) struct PyRecordBatch {
    batch: ReleasedInMain,
}

/// The batch, dropped in the main interpreter: its buffers may hold a Python producer's
/// memory, whose deleter waits forever when run in a subinterpreter (`deferred.rs`).
///
/// `None` in an instance ferry did not make. pyo3 cannot make the type immutable under the
/// abi3 ABI before Python 3.14, so a `__new__` set on it (`RecordBatch.__new__ =
/// lambda cls: object.__new__(cls)`) makes an instance whose payload ferry never wrote:
/// CPython's allocator zeroes it, and all-zero bytes are `None` here (the null pointer
/// niche `Option<Box<_>>` is guaranteed to use), which every method refuses and `drop`
/// skips. (An `Option<RecordBatch>` read all-zero bytes as `Some` over a null `Arc`.)
struct ReleasedInMain(Option<Box<RecordBatch>>);

impl ReleasedInMain {
    fn get(&self) -> PyResult<&RecordBatch> {
        self.0.as_deref().ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(
                "this ferry.RecordBatch was not made by ferry.record_batch (a __new__ set on the type made it empty); make one with ferry.record_batch({name: array})",
            )
        })
    }
}

impl Drop for ReleasedInMain {
    fn drop(&mut self) {
        if let Some(batch) = self.0.take() {
            // SAFETY: the value is dropped only with its Python object, whose deallocation
            // CPython runs with the GIL held.
            let py = unsafe { Python::assume_attached() };
            deferred::release(py, batch);
        }
    }
}

#[pymethods]
impl PyRecordBatch {
    /// The Arrow PyCapsule interface: the batch's schema (a struct of its columns).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        check_main_interpreter(py, false)?;
        arrow::batch_schema_capsule(py, self.batch.get()?)
    }

    /// The Arrow PyCapsule interface: the batch as one struct array sharing its buffers.
    /// `requested_schema` is not honoured (the interface lets a producer ignore it).
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema;
        check_main_interpreter(py, false)?;
        arrow::batch_array_capsules(py, self.batch.get()?)
    }

    /// The Arrow PyCapsule interface: a stream of this one batch. `requested_schema` is not
    /// honoured.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        check_main_interpreter(py, false)?;
        arrow::batch_stream_capsule(py, self.batch.get()?)
    }

    /// Number of rows.
    #[getter]
    fn num_rows(&self) -> PyResult<usize> {
        Ok(self.batch.get()?.num_rows())
    }

    /// The column names, in order.
    #[getter]
    fn column_names(&self) -> PyResult<Vec<String>> {
        Ok(self
            .batch
            .get()?
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect())
    }

    /// Column `name` as a read-only `ferry.HostArray` over the batch's memory (no copy).
    fn column(&self, py: Python<'_>, name: &str) -> PyResult<PyHostArray> {
        check_main_interpreter(py, false)?;
        let column = ferry_arrow::column(self.batch.get()?, name).map_err(arrow::to_py_err)?;
        column
            .to_host()
            .map(PyHostArray::new)
            .map_err(arrow::to_py_err)
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.batch.get()?.num_rows())
    }

    fn __repr__(&self) -> String {
        let Ok(batch) = self.batch.get() else {
            return "ferry.RecordBatch(empty: not made by ferry.record_batch)".to_owned();
        };
        let columns: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect();
        format!(
            "ferry.RecordBatch(rows={}, columns=[{}])",
            batch.num_rows(),
            columns.join(", ")
        )
    }
}

/// An array a column of `ferry.record_batch` is made from: a `ferry.HostArray` as it is (so
/// the copy rule sees its own holders), a DLPack object imported first, an Arrow array of any
/// type as it is.
enum Source<'py> {
    Ours(Bound<'py, PyHostArray>),
    Imported(HostArray),
    Arrow(arrow::ArrowColumn),
}

impl Source<'_> {
    fn column(&self) -> arrow::BatchColumn<'_> {
        match self {
            Source::Ours(ours) => arrow::BatchColumn::Host(ours.host().array()),
            Source::Imported(array) => arrow::BatchColumn::Host(array),
            Source::Arrow(column) => arrow::BatchColumn::Arrow(column),
        }
    }
}

/// `ferry.record_batch(columns)`: a `ferry.RecordBatch` of the named arrays (a dict of name to
/// `ferry.HostArray`, a DLPack object such as a NumPy array or PyTorch tensor, imported as
/// `ferry.from_dlpack` imports it, or an Arrow array of any type, such as a pyarrow array of
/// strings, which goes in as it is), all with the same first-axis length.
#[pyfunction]
#[pyo3(name = "record_batch")]
pub(crate) fn py_record_batch(
    py: Python<'_>,
    columns: &Bound<'_, PyAny>,
) -> PyResult<PyRecordBatch> {
    check_main_interpreter(py, false)?;
    let items = columns
        .call_method0(pyo3::intern!(py, "items"))
        .map_err(|_| {
            PyTypeError::new_err(
                "record_batch takes a dict of column name to array, e.g. {\"embedding\": t, \"id\": ids}",
            )
        })?;
    let items = PyList::new(py, items.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
    let mut sources = Vec::with_capacity(items.len());
    for item in items.iter() {
        let (name, value): (String, Bound<'_, PyAny>) = item.extract()?;
        let source = match value.cast_into::<PyHostArray>() {
            Ok(ours) => Source::Ours(ours),
            Err(other) => {
                let value = other.into_inner();
                // Arrow first: a pyarrow array speaks DLPack too, for fewer types.
                if value.hasattr(pyo3::intern!(py, "__arrow_c_array__"))? {
                    Source::Arrow(arrow::import_any_column(&value)?)
                } else {
                    Source::Imported(import_any(&value, None)?)
                }
            }
        };
        sources.push((name, source));
    }
    let named: Vec<(&str, arrow::BatchColumn<'_>)> = sources
        .iter()
        .map(|(name, source)| (name.as_str(), source.column()))
        .collect();
    let batch = arrow::batch_of(&named)?;
    Ok(PyRecordBatch {
        batch: ReleasedInMain(Some(Box::new(batch))),
    })
}
