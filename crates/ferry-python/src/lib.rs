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
//! facade re-exports as `ferry::python` (feature `python`). Modules: `capsule` (the DLPack capsule protocol), `class`
//! (what a `ferry.HostArray` holds and its methods do), `object` (its type object, built by hand: a
//! plain, non-GC object like NumPy's arrays), `method` (its `__dlpack__`, `__dlpack_device__` and `ferry.from_dlpack`, C functions), `exchange` (DLPack 1.3's C
//! exchange API table), `torch`
//! (PyTorch imports: a copy made before any Python code runs, through PyTorch's exchange
//! table where it gives the same tensor), `files` (`.npy`/`.npz`/safetensors functions),
//! `deferred` (releases a subinterpreter made, held for the main interpreter).
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

use ferry_core::{Backend, CopyPolicy, Error, HostArray};
use pyo3::exceptions::{PyBufferError, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;

#[cfg(feature = "arrow")]
mod arrow;
mod capsule;
mod class;
mod deferred;
mod exchange;
mod extract;
#[cfg(any(feature = "npy", feature = "safetensors"))]
mod files;
mod lease;
mod method;
mod numpy;
mod object;
mod torch;

pub use capsule::live_exports;
pub use class::PyHostArray;
pub use extract::{AnyArray, CastArray, ReadonlyArray, ReadwriteArray, Tensor};
pub use object::PyHostArrayMethods;
/// Re-exported so embedding code uses the same pyo3 as this crate.
pub use pyo3;

use capsule::import_dlpack;

/// A ferry error as the Python exception a NumPy user expects. (Cold: only failures call it, so
/// callers' hot paths stay compact.)
#[cold]
#[inline(never)]
pub fn to_py_err(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::NeedsCopy { .. } | Error::NotHostMemory { .. } | Error::NotWritable { .. } => {
            PyBufferError::new_err(message)
        }
        Error::DtypeMismatch { .. }
        | Error::UnsupportedDtype { .. }
        | Error::UnsupportedCast { .. }
        | Error::NoTypedView { .. } => PyTypeError::new_err(message),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } => PyOSError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

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

/// A `ferry.HostArray`'s own array (copied when `copy=True`), or a DLPack import of anything
/// else.
#[inline]
fn import_any(obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
    match obj.cast::<PyHostArray>() {
        Ok(ours) if copy == Some(true) => {
            lease::check_readable(&ours.host().array)?;
            ours.host()
                .array
                .to_contiguous(CopyPolicy::Always)
                .map_err(to_py_err)
        }
        Ok(ours) => {
            let array = ours.host().array.clone();
            // After the clone: a writable argument's lease taken before it is seen here, one
            // taken after it sees the clone (`lease.rs`).
            lease::check_readable(&array)?;
            Ok(array)
        }
        Err(_) => import_dlpack(obj, copy),
    }
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
    arrow::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.py().import(intern!(m.py(), "atexit"))?.call_method1(
        intern!(m.py(), "register"),
        (wrap_pyfunction!(deferred::release_at_exit, m)?,),
    )?;
    Ok(())
}

/// An error outside the main interpreter (`ImportError` at import, `RuntimeError` in a call).
/// ferry's hand-written entry points attach with `PyGILState_Ensure`, which CPython does not
/// support in a subinterpreter (a call from one waits forever for the GIL its own thread
/// holds), and its statics (the `HostArray` type, interned names) hold one interpreter's
/// objects. The import is refused there, and every entry point refuses too: a subinterpreter
/// can still reach an object made in the main one (through a static type's subclasses). In the
/// main interpreter, the check first releases what subinterpreters left (`deferred`).
pub(crate) fn check_main_interpreter(py: Python<'_>, importing: bool) -> PyResult<()> {
    // SAFETY: the GIL is held (`py`); both calls only read the current interpreter's state.
    let id = unsafe { pyo3::ffi::PyInterpreterState_GetID(pyo3::ffi::PyInterpreterState_Get()) };
    match id {
        0 => {
            deferred::release_queued(py);
            Ok(())
        }
        id if id < 0 => Err(PyErr::fetch(py)),
        id => {
            let message = format!(
                "ferry runs only in the main interpreter, not in subinterpreter {id} (its entry points attach with PyGILState_Ensure, which CPython does not support there); use it from the main interpreter"
            );
            Err(if importing {
                pyo3::exceptions::PyImportError::new_err(message)
            } else {
                pyo3::exceptions::PyRuntimeError::new_err(message)
            })
        }
    }
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
