//! Shared helpers for the criterion benchmarks: the run settings every target uses.

use criterion::Criterion;
use std::time::Duration;

/// Whether this is a `cargo xtask bench --quick` run (`FERRY_BENCH_QUICK` set): the smallest
/// size only, and short measurements.
pub fn quick() -> bool {
    std::env::var_os("FERRY_BENCH_QUICK").is_some()
}

/// Criterion's settings: 20 samples, or 10 short ones with `--quick`.
pub fn config() -> Criterion {
    let c = Criterion::default();
    if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
    } else {
        c.sample_size(20)
    }
}
