"""NumPy baselines for `cargo xtask bench`: transposed 4096x4096 f32 -> row-major, and a plain
copy, timed on this machine. Prints `name median_ns` lines (medians of 15 after warm-up)."""
import sys

import numpy as np

from timing import median_ns

side = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
a = np.arange(side * side, dtype=np.float32).reshape(side, side)
print(f"numpy_ascontiguousarray_transpose {median_ns(lambda: np.ascontiguousarray(a.T), 15)}")
print(f"numpy_copy {median_ns(lambda: a.copy(), 15)}")
print(f"numpy_version {np.__version__}")
