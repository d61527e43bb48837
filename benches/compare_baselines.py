"""NumPy and PyTorch baselines of `cargo xtask bench`'s compare group: `numpy.testing.
assert_allclose` and `torch.testing.assert_close` of the same two f32 arrays (equal, and 1% of
the elements off, whose assertion fails) of side x side elements. Prints `name median_ns`
lines (medians of 7 after warm-up)."""
import sys

import numpy as np
import torch

from timing import median_ns

side = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
n = side * side
expected = ((np.arange(n) % 1000).astype(np.float32) * 0.25).reshape(side, side)
off = expected.copy().reshape(-1)
off[::100] += 1.0
off = off.reshape(side, side)
equal = expected.copy()


def failing(check):
    def call():
        try:
            check()
        except AssertionError:
            pass
    return call


te, tq, to = torch.from_numpy(expected), torch.from_numpy(equal), torch.from_numpy(off)
print(f"numpy_assert_allclose_equal {median_ns(lambda: np.testing.assert_allclose(equal, expected), 7)}")
print(f"numpy_assert_allclose_1pct_off {median_ns(failing(lambda: np.testing.assert_allclose(off, expected)), 7)}")
print(f"torch_assert_close_equal {median_ns(lambda: torch.testing.assert_close(tq, te), 7)}")
print(f"torch_assert_close_1pct_off {median_ns(failing(lambda: torch.testing.assert_close(to, te)), 7)}")
print(f"versions numpy {np.__version__} torch {torch.__version__}")
