//! The gate every call into ferry passes: [`check_main_interpreter`] (ferry runs only in the
//! main interpreter, and there it first releases what subinterpreters left, `deferred.rs`) and
//! [`entry`], the wrapper of every hand-written C entry point (the GIL CPython holds, pyo3
//! attached, errors and panics turned into a Python exception).

use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::{deferred, raw};

/// An error outside the main interpreter (`ImportError` at import, `RuntimeError` in a call).
/// ferry's hand-written entry points attach with `PyGILState_Ensure`, which CPython does not
/// support in a subinterpreter (a call from one waits forever for the GIL its own thread
/// holds), and its statics (the `HostArray` type, interned names) hold one interpreter's
/// objects. The import is refused there, and every entry point refuses too: a subinterpreter
/// can still reach an object made in the main one (through a static type's subclasses). In the
/// main interpreter, the check first releases what subinterpreters left (`deferred`).
pub(crate) fn check_main_interpreter(py: Python<'_>, importing: bool) -> PyResult<()> {
    match raw::interpreter_id(py) {
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

/// Runs an entry point's body with the GIL CPython holds for C functions, turning an error or a
/// panic into a Python exception and `failed` (NULL, or -1). The body runs attached to pyo3
/// (`Python::try_attach`, which CPython's `PyGILState_Ensure` makes cheap on a thread that holds
/// the GIL): a `Py` or `PyErr` the body drops is released at once, not left in pyo3's pool of
/// deferred references, which attaching also empties. While the interpreter finalises, when
/// pyo3 refuses to attach, the body runs with the GIL CPython holds all the same. In a
/// subinterpreter (which reaches ferry only through an object made in the main one) it raises
/// `RuntimeError` instead of attaching, which would wait forever.
#[inline]
pub(crate) fn entry<R>(what: &str, failed: R, body: impl FnOnce(Python<'_>) -> PyResult<R>) -> R {
    // SAFETY: CPython calls C functions with the GIL held, which is all `assume_attached`
    // needs; nothing here attaches through PyGILState_Ensure before the interpreter is known
    // to be the main one.
    let held = unsafe { Python::assume_attached() };
    if let Err(error) = check_main_interpreter(held, false) {
        error.restore(held);
        return failed;
    }
    let mut call = Some((failed, body));
    // A closure by value, which pyo3 calls directly (no `&mut` shim between it and the body).
    match Python::try_attach(|py| run(what, py, &mut call)) {
        Some(result) => result,
        None => run(what, held, &mut call),
    }
}

/// [`entry`]'s body, run once: its result, or `failed` with the error or panic restored as the
/// Python exception.
#[inline]
fn run<R>(
    what: &str,
    py: Python<'_>,
    call: &mut Option<(R, impl FnOnce(Python<'_>) -> PyResult<R>)>,
) -> R {
    let (failed, body) = call.take().expect("run once");
    let error = match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(object)) => return object,
        Ok(Err(error)) => error,
        Err(_) => PyRuntimeError::new_err(format!("ferry panicked in {what}")),
    };
    error.restore(py);
    failed
}
