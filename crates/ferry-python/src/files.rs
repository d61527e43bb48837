//! The file functions of the Python module: `.npy`/`.npz` (feature `npy`) and safetensors
//! (feature `safetensors`) through `ferry-io`, arrays in and out as `ferry.HostArray`.

use std::path::PathBuf;

use ferry_core::HostArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::class::{PyHostArray, import_any};
use crate::error::to_py_err;
use crate::gate::check_main_interpreter;

/// Reads an `.npy` file (memory-mapped and read-only with `mmap=True`, NumPy's
/// `mmap_mode="r"`).
#[cfg(feature = "npy")]
#[pyfunction]
#[pyo3(signature = (path, *, mmap=false))]
fn load_npy(py: Python<'_>, path: PathBuf, mmap: bool) -> PyResult<PyHostArray> {
    check_main_interpreter(py, false)?;
    let array = py.detach(|| {
        if mmap {
            // SAFETY: like NumPy's mmap_mode="r", the caller must not change the file while
            // the array lives (documented in the README).
            unsafe { ferry_io::npy::map(&path) }
        } else {
            ferry_io::npy::load(&path)
        }
    });
    array.map(PyHostArray::new).map_err(to_py_err)
}

/// Writes an array (or anything with `__dlpack__`) to an `.npy` file.
#[cfg(feature = "npy")]
#[pyfunction]
fn save_npy(path: PathBuf, array: &Bound<'_, PyAny>) -> PyResult<()> {
    check_main_interpreter(array.py(), false)?;
    ferry_io::npy::save(&path, &import_any(array, None)?).map_err(to_py_err)
}

/// Reads every array of an `.npz` archive into a dict.
#[cfg(feature = "npy")]
#[pyfunction]
fn load_npz<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    check_main_interpreter(py, false)?;
    let out = PyDict::new(py);
    for (name, array) in py
        .detach(|| ferry_io::npy::load_npz(&path))
        .map_err(to_py_err)?
    {
        out.set_item(name, PyHostArray::new(array))?;
    }
    Ok(out)
}

/// Writes a dict of arrays to an `.npz` archive (`np.savez`, or `np.savez_compressed` with
/// `compressed=True`).
#[cfg(feature = "npy")]
#[pyfunction]
#[pyo3(signature = (path, arrays, *, compressed=false))]
fn save_npz(path: PathBuf, arrays: &Bound<'_, PyDict>, compressed: bool) -> PyResult<()> {
    check_main_interpreter(arrays.py(), false)?;
    let arrays = named_arrays(arrays)?;
    ferry_io::npy::save_npz(
        &path,
        arrays.iter().map(|(n, a)| (n.as_str(), a)),
        compressed,
    )
    .map_err(to_py_err)
}

/// Reads a safetensors file into a dict of arrays (memory-mapped and read-only by default).
#[cfg(feature = "safetensors")]
#[pyfunction]
#[pyo3(signature = (path, *, mmap=true))]
fn load_safetensors<'py>(
    py: Python<'py>,
    path: PathBuf,
    mmap: bool,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    check_main_interpreter(py, false)?;
    let file = py
        .detach(|| {
            if mmap {
                // SAFETY: as for `load_npy`: the caller must not change the file while arrays
                // live.
                unsafe { ferry_io::safetensors::map(&path) }
            } else {
                ferry_io::safetensors::load(&path)
            }
        })
        .map_err(to_py_err)?;
    let tensors = PyDict::new(py);
    for (name, array) in file.tensors {
        tensors.set_item(name, PyHostArray::new(array))?;
    }
    let metadata = PyDict::new(py);
    for (key, value) in file.metadata {
        metadata.set_item(key, value)?;
    }
    Ok((tensors, metadata))
}

/// Writes a dict of arrays (and optional string metadata) to a safetensors file.
#[cfg(feature = "safetensors")]
#[pyfunction]
#[pyo3(signature = (path, tensors, metadata=None))]
fn save_safetensors(
    path: PathBuf,
    tensors: &Bound<'_, PyDict>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> PyResult<()> {
    check_main_interpreter(tensors.py(), false)?;
    let arrays = named_arrays(tensors)?;
    ferry_io::safetensors::save(&path, arrays.iter().map(|(n, a)| (n.as_str(), a)), metadata)
        .map_err(to_py_err)
}

/// The dict's arrays, imported from a snapshot of its items: an import runs the value's own
/// `__dlpack__`, which may change the dict.
fn named_arrays(dict: &Bound<'_, PyDict>) -> PyResult<Vec<(String, HostArray)>> {
    dict.items()
        .iter()
        .map(|item| {
            let (name, array): (String, Bound<'_, PyAny>) = item.extract()?;
            Ok((name, import_any(&array, None)?))
        })
        .collect()
}

/// Adds the file functions this build has to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(feature = "npy")]
    {
        m.add_function(wrap_pyfunction!(load_npy, m)?)?;
        m.add_function(wrap_pyfunction!(save_npy, m)?)?;
        m.add_function(wrap_pyfunction!(load_npz, m)?)?;
        m.add_function(wrap_pyfunction!(save_npz, m)?)?;
    }
    #[cfg(feature = "safetensors")]
    {
        m.add_function(wrap_pyfunction!(load_safetensors, m)?)?;
        m.add_function(wrap_pyfunction!(save_safetensors, m)?)?;
    }
    Ok(())
}
