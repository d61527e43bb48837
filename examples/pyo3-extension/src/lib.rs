//! `ferry_example`: a Python extension written with ferry's argument types. Each function takes
//! whatever array its caller holds — a NumPy array, a PyTorch tensor, a pyarrow array, a
//! `ferry.HostArray` — and returns `ferry.HostArray`s, which NumPy, PyTorch and pyarrow take
//! without a copy.

use candle_core::D;
use ferry::ndarray::{Axis, Ix2};
use ferry::python::{AnyArray, ReadonlyArray, Tensor};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The Euclidean norm of each row of a float32 matrix (read where the caller's array is).
#[pyfunction]
fn row_norms(x: ReadonlyArray<'_, f32, Ix2>) -> AnyArray {
    AnyArray::from(x.as_array().map_axis(Axis(1), |row| row.dot(&row).sqrt()))
}

/// Softmax over the last axis, computed by candle.
#[pyfunction]
fn softmax(x: Tensor<ferry::Candle>) -> PyResult<Tensor<ferry::Candle>> {
    let x = x.into_inner();
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1).map_err(candle_error)?);
    let exp = shifted.and_then(|s| s.exp()).map_err(candle_error)?;
    let total = exp.sum_keepdim(D::Minus1).map_err(candle_error)?;
    exp.broadcast_div(&total).map(Tensor).map_err(candle_error)
}

/// Each row minus its mean, computed by Burn.
#[pyfunction]
fn center_rows(x: Tensor<ferry::Burn<2>>) -> Tensor<ferry::Burn<2>> {
    let x = x.into_inner();
    let means = x.clone().mean_dim(1);
    Tensor(x - means)
}

/// An Arrow-ready batch: `{"embedding": rows scaled to unit length, "norm": their norms}`, each
/// a `ferry.HostArray` that `pyarrow.array` takes as a column
/// (`pa.RecordBatch.from_pydict({k: pa.array(v) for k, v in batch.items()})`).
#[pyfunction]
fn embed_batch<'py>(
    py: Python<'py>,
    x: ReadonlyArray<'py, f32, Ix2>,
) -> PyResult<Bound<'py, PyDict>> {
    let x = x.as_array();
    let norms = x.map_axis(Axis(1), |row| row.dot(&row).sqrt());
    let mut embedding = x.to_owned();
    for (mut row, &norm) in embedding.rows_mut().into_iter().zip(&norms) {
        if norm > 0.0 {
            row /= norm;
        }
    }
    let batch = PyDict::new(py);
    batch.set_item("embedding", AnyArray::from(embedding))?;
    batch.set_item("norm", AnyArray::from(norms))?;
    Ok(batch)
}

fn candle_error(error: candle_core::Error) -> PyErr {
    PyValueError::new_err(error.to_string())
}

/// What `cargo xtask bench` times: the cost of extracting an argument, beside rust-numpy's.
#[cfg(feature = "bench")]
mod bench {
    use super::*;

    /// Takes the argument as ferry's `ReadonlyArray` (extraction only).
    #[pyfunction]
    pub fn take_ferry(x: ReadonlyArray<'_, f32, Ix2>) -> usize {
        x.as_array().len()
    }

    /// Takes the argument as rust-numpy's `PyReadonlyArray2` (extraction only).
    #[pyfunction]
    pub fn take_rust_numpy(x: numpy::PyReadonlyArray2<'_, f32>) -> usize {
        x.as_array().len()
    }

    /// Takes the argument as it is: the call's own cost.
    #[pyfunction]
    pub fn take_object(x: &Bound<'_, PyAny>) -> usize {
        let _ = x;
        0
    }
}

#[pymodule]
fn ferry_example(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(row_norms, m)?)?;
    m.add_function(wrap_pyfunction!(softmax, m)?)?;
    m.add_function(wrap_pyfunction!(center_rows, m)?)?;
    m.add_function(wrap_pyfunction!(embed_batch, m)?)?;
    #[cfg(feature = "bench")]
    {
        m.add_function(wrap_pyfunction!(bench::take_ferry, m)?)?;
        m.add_function(wrap_pyfunction!(bench::take_rust_numpy, m)?)?;
        m.add_function(wrap_pyfunction!(bench::take_object, m)?)?;
    }
    Ok(())
}
