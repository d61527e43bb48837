//! Releases that reach a subinterpreter wait for the main one: what a `ferry.HostArray` or one
//! of ferry's capsules holds may end in a Python producer's DLPack deleter (NumPy's, PyTorch's),
//! which attaches with `PyGILState_Ensure` and waits forever when run from a subinterpreter.
//!
//! ferry refuses to be imported in a subinterpreter, but one can still reach, and drop the last
//! reference to, an object made in the main interpreter (through a static type's
//! subclasses). Such a release is queued here instead, and the queue is emptied by the next
//! ferry call in the main interpreter (the check every entry point makes, `gate.rs`, and the
//! argument types, `extract.rs`). So is a Python reference released on a thread that does not
//! hold the GIL ([`release_later`]), which must not wait for it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::Python;

use crate::raw::{in_main_interpreter, with_error_indicator_aside};

/// What was released outside the main interpreter, in the order it was released.
static QUEUE: Mutex<Vec<Box<dyn Send>>> = Mutex::new(Vec::new());

/// Whether [`QUEUE`] may hold something: one relaxed load on every call instead of a lock.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Drops `value` now in the main interpreter, or queues it for the main interpreter's next
/// ferry call when the thread runs in a subinterpreter.
pub(crate) fn release<T: Send + 'static>(py: Python<'_>, value: T) {
    if in_main_interpreter(py) {
        drop(value);
    } else {
        QUEUE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Box::new(value));
        PENDING.store(true, Ordering::Release);
    }
}

/// Queues `value` for the main interpreter's next ferry call (or its exit): for a release on a
/// thread that does not hold the GIL, which must not wait for it (the thread holding it may be
/// waiting for this one). The queue is this build's: in an extension built on ferry beside the
/// `ferry` wheel, it is emptied by the extension's own next argument extraction, not by the
/// wheel's calls, and what is still queued when the process exits is left to the exit.
pub(crate) fn release_later<T: Send + 'static>(value: T) {
    QUEUE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(Box::new(value));
    PENDING.store(true, Ordering::Release);
}

/// [`release_queued`] when something is queued and the caller runs in the main interpreter
/// (one relaxed load otherwise): for callers that the gate does not check (the argument types
/// of extensions, whose functions a subinterpreter can reach and call although pyo3 refuses to
/// import their module there).
#[inline]
pub(crate) fn release_queued_in_main(py: Python<'_>) {
    if PENDING.load(Ordering::Relaxed) && in_main_interpreter(py) {
        release_queued(py);
    }
}

/// Drops what subinterpreters queued; the caller runs in the main interpreter. The queue is
/// taken out before anything drops, so a deleter that calls ferry again finds it empty.
pub(crate) fn release_queued(py: Python<'_>) {
    if !PENDING.load(Ordering::Acquire) {
        return;
    }
    let queued = {
        let mut queue = QUEUE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        PENDING.store(false, Ordering::Release);
        std::mem::take(&mut *queue)
    };
    // SAFETY: the GIL is held (`py`); a producer's deleter may run Python code, so the error
    // indicator of the call that emptied the queue is put aside meanwhile.
    unsafe {
        with_error_indicator_aside(|| {
            for value in queued {
                let dropped =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(value)));
                if dropped.is_err() {
                    pyo3::exceptions::PyRuntimeError::new_err(
                        "ferry panicked while releasing what a subinterpreter left",
                    )
                    .write_unraisable(py, None);
                }
            }
        });
    }
}

/// Registered with `atexit` when the module is made: what subinterpreters left is released
/// before the interpreter finalises, even when the program calls ferry no more.
#[pyo3::pyfunction]
pub(crate) fn release_at_exit(py: Python<'_>) {
    if in_main_interpreter(py) {
        release_queued(py);
    }
}
