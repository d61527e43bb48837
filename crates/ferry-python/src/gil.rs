//! Python references that a host array holds and may drop on any thread: whether the dropping
//! thread holds the main interpreter's GIL (CPython's own `PyGILState_Check` answers 1 on every
//! thread once a subinterpreter has existed, and during late finalisation), and references
//! dropped where it does not, released on ferry's next call into Python.
//!
//! The reference a host array holds (a PyTorch import's copy-on-write clone) must be released
//! with the GIL. A host array's last holder is often a thread that holds it (the array's
//! `dealloc`, a consumer's deleter run by Python code), where the reference goes at once. Where
//! the dropping thread does not hold it (a Rust thread, a framework's worker), the reference
//! goes to a list that every ferry entry point empties first ([`release_deferred`]), so the
//! memory goes when the last view goes, or at the latest on ferry's next call.

use std::ffi::{CStr, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use pyo3::prelude::*;
use pyo3::{Python, ffi};

/// The address of `name` among the loaded objects (the interpreter's functions that exist in
/// every CPython ferry supports but outside the stable ABI the abi3 wheel links against);
/// `None` where nothing exports it.
pub(crate) fn interpreter_symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym only looks a NUL-terminated name up in the loaded objects.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!symbol.is_null()).then_some(symbol)
}

/// `PyThreadState *PyThreadState_GetUnchecked(void)` (3.13), known before as
/// `_PyThreadState_UncheckedGet` (exported by every CPython 3): the thread state that holds the
/// GIL (3.10, 3.11: one global, whichever thread holds it) or this thread's attached one (3.12
/// on: NULL while this thread is detached). Never a fatal error, with or without the GIL.
fn current_thread_state() -> Option<unsafe extern "C" fn() -> *mut ffi::PyThreadState> {
    // The address as a `usize`: a raw pointer is not `Sync`, and `drop` may run on any thread.
    static CURRENT: OnceLock<usize> = OnceLock::new();
    let symbol = *CURRENT.get_or_init(|| {
        interpreter_symbol(c"PyThreadState_GetUnchecked")
            .or_else(|| interpreter_symbol(c"_PyThreadState_UncheckedGet"))
            .map_or(0, |symbol| symbol as usize)
    });
    // SAFETY: where CPython exports either name, it is a function of that signature.
    (symbol != 0).then(|| unsafe {
        std::mem::transmute::<usize, unsafe extern "C" fn() -> *mut ffi::PyThreadState>(symbol)
    })
}

/// Whether the calling thread holds the main interpreter's GIL now: the current thread state
/// (see [`current_thread_state`]) is this thread's own state in the main interpreter
/// (`PyGILState_GetThisThreadState`, which pyo3 and Python's threads use). Both are read
/// without the GIL; a thread state is this thread's alone, so when they match the thread is the
/// one that holds the GIL, with its main-interpreter state. `false` where either is missing: a
/// thread that never entered Python, a subinterpreter's state (one GIL of its own from 3.12),
/// finalisation (CPython clears the second first), or an interpreter without the symbol.
pub(crate) fn holds_gil() -> bool {
    let Some(current) = current_thread_state() else {
        return false;
    };
    // SAFETY: both only read the interpreter's bookkeeping (an atomic or a thread-local, and
    // the thread-specific auto state), which is what they are for, from any thread.
    unsafe {
        let this_thread = ffi::PyGILState_GetThisThreadState();
        !this_thread.is_null() && current() == this_thread
    }
}

/// References dropped by threads that did not hold the GIL, as object addresses.
static DEFERRED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Whether [`DEFERRED`] may hold any (set after a push; checked, without the lock, on every
/// entry point).
static ANY_DEFERRED: AtomicBool = AtomicBool::new(false);

/// Releases the references dropped without the GIL since the last call. Every ferry entry point
/// calls it first; it costs one atomic load when there are none.
#[inline]
pub(crate) fn release_deferred(py: Python<'_>) {
    if ANY_DEFERRED.load(Ordering::Acquire) {
        release_deferred_slow(py);
    }
}

#[cold]
#[inline(never)]
fn release_deferred_slow(_py: Python<'_>) {
    ANY_DEFERRED.store(false, Ordering::Release);
    let objects = std::mem::take(&mut *DEFERRED.lock().unwrap_or_else(PoisonError::into_inner));
    for object in objects {
        // SAFETY: `_py` proves the GIL is held; each address is a reference a dropped
        // `PyReference` owned, handed to this list once and released once, here.
        unsafe { ffi::Py_DECREF(object as *mut ffi::PyObject) };
    }
}

/// A strong reference to a Python object that may be dropped on any thread: released at once
/// where the dropping thread holds the GIL ([`holds_gil`]), else on ferry's next entry.
pub(crate) struct PyReference(NonNull<ffi::PyObject>);

// SAFETY: the reference is only released (never read) outside the GIL, and only through the
// GIL-checked paths of `drop`; the object itself is reached by nobody through this value.
unsafe impl Send for PyReference {}
// SAFETY: as above: nothing is reachable through `&PyReference`.
unsafe impl Sync for PyReference {}

impl PyReference {
    /// Holds `object` (its reference moves in).
    pub(crate) fn new(object: Py<PyAny>) -> PyReference {
        // SAFETY: `into_ptr` hands over a live, owned, non-null reference.
        PyReference(unsafe { NonNull::new_unchecked(object.into_ptr()) })
    }
}

impl Drop for PyReference {
    fn drop(&mut self) {
        let object = self.0.as_ptr();
        if holds_gil() {
            // SAFETY: this thread holds the GIL; the reference is ours to release, once.
            unsafe { ffi::Py_DECREF(object) };
            return;
        }
        DEFERRED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(object as usize);
        // After the push: a drain that misses it leaves the flag set for the next one.
        ANY_DEFERRED.store(true, Ordering::Release);
    }
}
