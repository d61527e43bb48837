"""Argument extraction timings for `cargo xtask bench`: the example extension
(examples/pyo3-extension, built with its `bench` feature) called with a NumPy array and with a
PyTorch tensor, each function doing nothing but take its argument.

- `take_ferry(ndarray)`, ferry's `ReadonlyArray<f32, Ix2>`, beside `take_rust_numpy(ndarray)`,
  rust-numpy 0.30's `PyReadonlyArray2<f32>` in the same extension (target: ≤ 1.0×);
- `take_ferry(tensor)` beside `np.from_dlpack(tensor)` (target: ≤ 1.0×); ferry's import of a
  PyTorch tensor is a copy (16 KiB here), NumPy's a view;
- `take_object(ndarray)`, a function taking `&Bound<PyAny>`: the call's own cost, which the
  two extraction rows above include.

Prints `row` lines as python_handoff.py does (see timing.best_pair_ns).
"""

import sys

import numpy as np
import torch

import ferry_example as ex
from timing import best_pair_ns, row

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
a = np.ones((64, 64), dtype=np.float32)
t = torch.ones((64, 64), dtype=torch.float32)

cases = [
    ("take_ferry(ndarray)", lambda: ex.take_ferry(a),
     "take_rust_numpy(ndarray)", lambda: ex.take_rust_numpy(a)),
    ("take_ferry(tensor)", lambda: ex.take_ferry(t),
     "np.from_dlpack(tensor)", lambda: np.from_dlpack(t)),
    ("take_object(ndarray)", lambda: ex.take_object(a),
     "take_rust_numpy(ndarray)", lambda: ex.take_rust_numpy(a)),
]
anchors = set()
for case, call, anchor, anchor_call in cases:
    ours, theirs, ratio = best_pair_ns(call, anchor_call, n)
    if anchor not in anchors:
        row("python_extension", anchor, theirs)
        anchors.add(anchor)
    row("python_extension", case, ours, anchor, ratio)
print(f"versions\tnumpy {np.__version__}, torch {torch.__version__}")
