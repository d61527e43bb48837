"""Timing shared by the baseline scripts of `cargo xtask bench` (numpy_transpose.py,
pyarrow_parquet.py): the median of repeated calls after a warm-up call."""
import time


def median_ns(fn, runs):
    """Median wall time of `runs` calls of `fn`, in nanoseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    times.sort()
    return times[len(times) // 2]
