//! `ferry-python`: the Python hand-off — `ferry.HostArray`, a class NumPy, PyTorch, JAX and
//! CuPy import with their `from_dlpack`; `ferry.from_dlpack`, which imports theirs; file
//! functions; and the Rust functions that hand framework tensors to an embedded or calling
//! Python and take them back.
//!
//! ```no_run
//! # fn main() -> pyo3::PyResult<()> {
//! use pyo3::prelude::*;
//!
//! let host = ferry_core::HostArray::from_vec(vec![2, 3], vec![0f32, 1., 2., 3., 4., 5.]).unwrap();
//! Python::attach(|py| {
//!     let np = py.import("numpy")?;
//!     // The NumPy array shares the host array's memory.
//!     let array = np.call_method1("from_dlpack", (ferry_python::to_python(py, host)?,))?;
//!     assert_eq!(array.call_method0("sum")?.extract::<f32>()?, 15.0);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Framework tensors go the same way with [`tensor_to_python`] and come back with
//! [`tensor_from_python`], for any framework's [`Backend`].
//!
//! The only ferry crate that knows pyo3: it is both the `ferry` extension module (a cdylib that
//! maturin packs into an abi3 wheel: `pip install ./crates/ferry-python`) and an rlib that the
//! facade re-exports as `ferry::python` (feature `python`).
//!
//! Its modules are layered, and each uses only the modules below it (and those before it in
//! its own layer); `cargo xtask layers` checks it, from the list in `xtask/src/layers.rs`:
//! 1. Raw CPython, knowing no protocol and no class: `error` (ferry's errors as Python
//!    exceptions), `raw` (the one module that calls CPython's C API or the dynamic linker: the
//!    hand-built type machinery, capsules, `PyObject_VectorcallMethod` and other symbols,
//!    fast-call argument parsing, the error indicator), `deferred` (releases a subinterpreter
//!    made, held for the main interpreter), `gate` (`check_main_interpreter`, and `entry`,
//!    which wraps every C entry point: GIL, panics), `lease` (the write leases of
//!    `ReadwriteArray` arguments).
//! 2. The protocols, on host arrays, knowing nothing of the Python class: `capsule` (the
//!    DLPack capsule protocol, live exports), `exchange` (DLPack 1.3's C exchange API table,
//!    generic over the class it serves), `torch` (PyTorch imports: a copy made before any
//!    Python code runs, through PyTorch's exchange table where it gives the same tensor),
//!    `import` (any DLPack object's import), `arrow` (the Arrow PyCapsule interface).
//! 3. The class: `class` (what a `ferry.HostArray` holds and its methods do), `method` (its
//!    `__dlpack__`, `__dlpack_device__` and `ferry.from_dlpack`, C functions), `object` (its
//!    type object, built by hand: a plain, non-GC object like NumPy's arrays; it assembles the
//!    method table and the exchange table), `extract` (argument and return types), `files`
//!    (`.npy`/`.npz`/safetensors functions).
//! 4. This root, which registers the module and holds the public functions.
//!
//! Protocol (DLPack's Python specification):
//! - `__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None)` returns a
//!   `"dltensor_versioned"` capsule when `max_version` has major ≥ 1, else a legacy `"dltensor"`
//!   one. Consumers rename it to `"used_…"`; the capsule's destructor frees only a capsule that
//!   was never consumed.
//! - `copy=True` exports a fresh copy (flag IS_COPIED); `copy=False` that cannot be honoured
//!   raises `BufferError` — as does a read-only array asked for through a legacy capsule, which
//!   cannot carry the READ_ONLY flag (with `copy=None` such a consumer gets a writable copy).
//! - `type(h).__dlpack_c_exchange_api__` is DLPack 1.3's C exchange API: a static table of C
//!   functions (export, import, borrowed `DLTensor`, allocator, stream) that consumers such as
//!   tvm-ffi call instead of `__dlpack__`, with the same flags and deleter rules.
//! - Deleters: ferry's own release Rust memory only and never touch Python, so they need no
//!   GIL and are safe while the interpreter finalises. When that memory came from a Python
//!   producer, the producer's deleter runs (NumPy's and PyTorch's take the GIL themselves and do
//!   nothing once the interpreter is finalising); a PyTorch tensor's import is a copy and holds
//!   nothing of PyTorch's (`torch`). What a subinterpreter releases waits for the main
//!   interpreter (`deferred`).

use ferry_core::{Backend, HostArray};
use pyo3::intern;
use pyo3::prelude::*;

// The layers, lowest first (the order within each: the crate doc above, `xtask/src/layers.rs`).
// 1. Raw CPython.
mod deferred;
mod error;
mod gate;
mod lease;
mod raw;
// 2. The protocols.
#[cfg(feature = "arrow")]
mod arrow;
#[cfg(feature = "arrow")]
mod batch;
mod capsule;
mod exchange;
mod import;
mod torch;
// 3. The class.
mod class;
mod extract;
#[cfg(any(feature = "npy", feature = "safetensors"))]
mod files;
mod method;
mod numpy;
mod object;

pub use capsule::live_exports;
pub use class::{PyHostArray, PyHostArrayMethods};
pub use error::to_py_err;
pub use extract::{AnyArray, CastArray, ReadonlyArray, ReadwriteArray, Tensor};
/// Re-exported so embedding code uses the same pyo3 as this crate.
pub use pyo3;

use class::import_any;
use gate::check_main_interpreter;

/// A `ferry.HostArray` over `array` (no copy).
pub fn to_python(py: Python<'_>, array: HostArray) -> PyResult<Bound<'_, PyHostArray>> {
    PyHostArray::new(array).into_pyobject(py)
}

/// The host array behind any object that speaks DLPack (NumPy arrays, PyTorch tensors,
/// `ferry.HostArray`, ...), sharing its memory — except a PyTorch tensor's, which is copied
/// (PyTorch may free or change it under an importer); the producer's deleter runs once when the
/// last view drops.
pub fn from_python(obj: &Bound<'_, PyAny>) -> PyResult<HostArray> {
    import_any(obj, None)
}

/// Hands a framework tensor to Python as a `ferry.HostArray` (zero-copy for host memory; one
/// copy of the viewed span for GPU memory), ready for `numpy.from_dlpack` or
/// `torch.from_dlpack`: `tensor_to_python::<ferry::Candle>(py, &t)`.
pub fn tensor_to_python<'py, B: Backend>(
    py: Python<'py>,
    tensor: &B::Tensor,
) -> PyResult<Bound<'py, PyHostArray>> {
    to_python(py, B::to_host(tensor).map_err(to_py_err)?)
}

/// Takes any DLPack object from Python into a tensor of backend `B` on `device` (sharing
/// memory where the framework can wrap it, else one copy into its storage).
pub fn tensor_from_python<B: Backend>(
    obj: &Bound<'_, PyAny>,
    device: &B::Device,
) -> PyResult<B::Tensor> {
    let array = from_python(obj)?;
    B::from_dlpack(array.into_dlpack(), device).map_err(to_py_err)
}

/// Exports handed to Python consumers that are still alive.
#[pyfunction]
#[pyo3(name = "live_exports")]
fn py_live_exports(py: Python<'_>) -> PyResult<usize> {
    check_main_interpreter(py, false)?;
    Ok(live_exports())
}

/// Imports Arrow data, sharing its memory (read-only). From `__arrow_c_array__` (pyarrow and
/// nanoarrow arrays, record batches, `ferry.RecordBatch`): a primitive array becomes a 1-D
/// `ferry.HostArray`, an `arrow.fixed_shape_tensor` array (or a bare `FixedSizeList` of
/// numbers) one `HostArray` whose first axis is the rows, an `arrow.variable_shape_tensor`
/// array a list of `HostArray`s, a record batch a dict of its columns so imported. From
/// `__arrow_c_stream__` (ChunkedArrays, Tables, RecordBatchReaders, Polars Series and
/// DataFrames): the same for each chunk, in a list (a dict of lists for a table), or with
/// `combine=True` each column's chunks joined into one (a copy only when there are two or
/// more, in the array's `copy_log`). Nulls are refused.
#[cfg(feature = "arrow")]
#[pyfunction]
#[pyo3(name = "from_arrow", signature = (obj, *, combine = false))]
fn py_from_arrow<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    combine: bool,
) -> PyResult<Bound<'py, PyAny>> {
    check_main_interpreter(py, false)?;
    to_python_import(py, arrow::import_arrays(obj, combine)?)
}

/// An Arrow import as Python objects: a `HostArray`, a list, or a dict of column names.
#[cfg(feature = "arrow")]
fn to_python_import(py: Python<'_>, imported: arrow::Imported) -> PyResult<Bound<'_, PyAny>> {
    use arrow::Imported;
    Ok(match imported {
        Imported::One(array) => PyHostArray::new(array).into_pyobject(py)?.into_any(),
        Imported::PerRow(tensors) => {
            let tensors: Vec<PyHostArray> = tensors.into_iter().map(PyHostArray::new).collect();
            pyo3::types::PyList::new(py, tensors)?.into_any()
        }
        Imported::Chunks(chunks) => {
            let list = pyo3::types::PyList::empty(py);
            for chunk in chunks {
                list.append(to_python_import(py, chunk)?)?;
            }
            list.into_any()
        }
        Imported::Columns(columns) => {
            let dict = pyo3::types::PyDict::new(py);
            for (name, column) in columns {
                dict.set_item(name, to_python_import(py, column)?)?;
            }
            dict.into_any()
        }
    })
}

/// Fills a Python module with ferry's class and functions (the `ferry` extension module calls
/// this; so can a program that embeds Python, see [`add_module`]).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    check_main_interpreter(m.py(), true)?;
    extract::REGISTERED.store(true, std::sync::atomic::Ordering::Relaxed);
    m.add("HostArray", object::host_array_type(m.py())?)?;
    method::add_from_dlpack(m)?;
    m.add_function(wrap_pyfunction!(py_live_exports, m)?)?;
    #[cfg(any(feature = "npy", feature = "safetensors"))]
    files::register(m)?;
    #[cfg(feature = "arrow")]
    m.add_function(wrap_pyfunction!(py_from_arrow, m)?)?;
    #[cfg(feature = "arrow")]
    {
        m.add_class::<batch::PyRecordBatch>()?;
        m.add_function(wrap_pyfunction!(batch::py_record_batch, m)?)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.py().import(intern!(m.py(), "atexit"))?.call_method1(
        intern!(m.py(), "register"),
        (wrap_pyfunction!(deferred::release_at_exit, m)?,),
    )?;
    Ok(())
}

/// Makes `import ferry` work in an embedded interpreter: builds the module and puts it in
/// `sys.modules`.
pub fn add_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "ferry")?;
    register(&m)?;
    py.import(intern!(py, "sys"))?
        .getattr(intern!(py, "modules"))?
        .set_item("ferry", &m)?;
    Ok(m)
}

/// `import ferry`: the extension module's entry point.
#[pymodule]
#[pyo3(name = "ferry")]
fn ferry_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    register(m)
}
