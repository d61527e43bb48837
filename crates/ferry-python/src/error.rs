//! ferry's errors as the Python exceptions NumPy users expect ([`to_py_err`], re-exported at the
//! crate root): the one conversion every layer of this crate raises through.

use ferry_core::Error;
use pyo3::PyErr;
use pyo3::exceptions::{PyBufferError, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};

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
