"""NumPy baselines for `cargo xtask bench`: transposed 4096x4096 f32 -> row-major, and a plain
copy, timed on this machine. Prints `name median_ns` lines (medians of 15 after warm-up)."""
import sys
import time

import numpy as np


def median_ns(fn, runs=15):
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    times.sort()
    return times[len(times) // 2]


side = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
a = np.arange(side * side, dtype=np.float32).reshape(side, side)
print(f"numpy_ascontiguousarray_transpose {median_ns(lambda: np.ascontiguousarray(a.T))}")
print(f"numpy_copy {median_ns(lambda: a.copy())}")
print(f"numpy_version {np.__version__}")
