//! The `ferry` Python extension module: `ferry.HostArray` (exported to NumPy and PyTorch with
//! their `from_dlpack`), `ferry.from_dlpack` for their arrays, and `.npy`/`.npz`/safetensors
//! files. Everything lives in `ferry::python`; this crate only names the module.

use pyo3::prelude::*;

/// `import ferry`.
#[pymodule]
#[pyo3(name = "ferry")]
fn ferry_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    ferry::python::register(m)
}
