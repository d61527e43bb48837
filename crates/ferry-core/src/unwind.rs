//! Drops that must not unwind: what ferry keeps for a C caller (a DLPack deleter, an Arrow
//! release) is dropped inside an `extern "C"` function, where a panic aborts the process.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Drops `value` without letting a panic of its drop unwind into the caller: the panic is
/// caught and its payload dropped the same way, a few times at most (a payload that panics
/// while dropped is replaced by that panic's payload); one still panicking after that is
/// leaked rather than looped on. For code a C function runs (an owner of user memory whose
/// `Drop` panics must not abort the process) and for the payloads of caught panics.
pub fn drop_without_unwinding<T>(value: T) {
    let Err(mut payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) else {
        return;
    };
    for _ in 0..8 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}
