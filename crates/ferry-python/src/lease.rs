//! Write leases: the memory spans that `ReadwriteArray` arguments (`extract.rs`) hold
//! writable for the length of a call, and the check every other reader in this build of ferry
//! makes, so that no argument, export or import reads memory while an argument writes it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use ferry_core::HostArray;
use pyo3::PyResult;
use pyo3::exceptions::PyBufferError;

/// The spans lent writable now: `(first byte, one past the last, lease id)`. A handful at
/// most (one per writable argument of the calls on the stack), so a list is searched.
static LEASES: Mutex<Vec<(usize, usize, usize)>> = Mutex::new(Vec::new());
/// How many leases are held: readers skip the lock while it is zero.
static HELD: AtomicUsize = AtomicUsize::new(0);
/// The next lease's id.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The byte range `array` reaches (empty for an empty array).
fn span(array: &HostArray) -> (usize, usize) {
    let (start, len) = array.byte_span();
    let start = start as usize;
    (start, start.saturating_add(len))
}

fn overlaps((a_start, a_end): (usize, usize), (b_start, b_end): (usize, usize)) -> bool {
    a_start < b_end && b_start < a_end
}

fn leases() -> std::sync::MutexGuard<'static, Vec<(usize, usize, usize)>> {
    // The list is valid after any panic (every change is one push or one removal).
    LEASES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One span held writable; released when dropped.
#[derive(Debug)]
pub(crate) struct WriteLease {
    id: usize,
}

impl WriteLease {
    /// Registers `array`'s span as lent writable, unless another lease holds any byte of it.
    /// The caller checks that nothing else holds the memory *after* this returns (the fence
    /// pairs with [`check_readable`]'s: a reader that takes a handle either is seen by that
    /// check or sees this lease).
    pub(crate) fn take(array: &HostArray) -> PyResult<WriteLease> {
        let wanted = span(array);
        let mut held = leases();
        if held.iter().any(|&(s, e, _)| overlaps((s, e), wanted)) {
            return Err(lent_error(array));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        held.push((wanted.0, wanted.1, id));
        HELD.fetch_add(1, Ordering::SeqCst);
        drop(held);
        fence(Ordering::SeqCst);
        Ok(WriteLease { id })
    }
}

impl Drop for WriteLease {
    fn drop(&mut self) {
        let mut held = leases();
        if let Some(at) = held.iter().position(|&(_, _, id)| id == self.id) {
            held.swap_remove(at);
            HELD.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Refuses to read `array` while a writable argument holds any byte of it. Readers call it
/// after taking their own handle to the memory (a clone, an import, an export's hold).
#[inline]
pub(crate) fn check_readable(array: &HostArray) -> PyResult<()> {
    fence(Ordering::SeqCst);
    if HELD.load(Ordering::SeqCst) == 0 {
        return Ok(());
    }
    let wanted = span(array);
    if leases().iter().any(|&(s, e, _)| overlaps((s, e), wanted)) {
        return Err(lent_error(array));
    }
    Ok(())
}

#[cold]
fn lent_error(array: &HostArray) -> pyo3::PyErr {
    PyBufferError::new_err(format!(
        "the memory of this array (shape {:?}, dtype {}) is lent writable to a ReadwriteArray argument of a call in progress; pass a copy (`.copy()`) to read it beside that argument",
        array.shape(),
        array.dtype()
    ))
}
