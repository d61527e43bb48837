"""Python hand-off timings for `cargo xtask bench`, in one process, against the installed wheel:
each ferry call beside the NumPy or PyTorch call doing the same job, and DLPack 1.3's C
exchange API against the `__dlpack__` call it replaces.

Prints tab-separated `row GROUP CASE NANOSECONDS BASELINE RATIO` lines: per call, the best of
41 rounds of N calls (N = the first argument) after a warm-up, with the rounds of a case and its
baseline interleaved (which of the two goes first alternates), and RATIO, the median over the
rounds of the case's time over its baseline's in the same round (empty for a baseline). Many
short rounds rather than a few long ones: on a shared 2-core machine a long round rarely runs
undisturbed, and the best round is the estimate of the undisturbed time. The ratio is taken
round by round because this machine also switches between a fast and a slow state every few
seconds: the best rounds of a case and of its baseline may come from different states, while
the two rounds of one pair almost always share one.
"""

import sys

import numpy as np
import torch
import tvm_ffi  # on PyTorch 2.9 its add-on publishes torch.Tensor.__dlpack_c_exchange_api__

import ferry
from timing import best_pair_ns, row


n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
a = np.arange(12, dtype=np.float32).reshape(3, 4)
t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
h = ferry.from_dlpack(a)

# Each ferry call, then its anchor: the NumPy or PyTorch call doing the same job.
handoff = [
    ("ferry.from_dlpack(ndarray)", lambda: ferry.from_dlpack(a),
     "torch.from_dlpack(ndarray)", lambda: torch.from_dlpack(a)),
    ("ferry.from_dlpack(tensor)", lambda: ferry.from_dlpack(t),
     "np.from_dlpack(tensor)", lambda: np.from_dlpack(t)),
    ("np.from_dlpack(HostArray)", lambda: np.from_dlpack(h),
     "np.from_dlpack(tensor)", lambda: np.from_dlpack(t)),
    ("torch.from_dlpack(HostArray)", lambda: torch.from_dlpack(h),
     "torch.from_dlpack(ndarray)", lambda: torch.from_dlpack(a)),
]
for case, call, anchor, anchor_call in handoff:
    ours, theirs, ratio = best_pair_ns(call, anchor_call, n)
    row("python_handoff", anchor, theirs)
    row("python_handoff", case, ours, anchor, ratio)

# ferry's import of a PyTorch tensor is a copy made as PyTorch's C export returns: its exchange
# table where it is (PyTorch >= 2.10 publishes it; here tvm-ffi's add-on does, as `import
# tvm_ffi` above loads it), else `torch._C._to_dlpack_versioned`.
torch_table = torch.Tensor.__dlpack_c_exchange_api__
torch_cases = [
    ("ferry.from_dlpack(new tensor)", lambda: ferry.from_dlpack(torch.empty(3, 4)),
     "np.from_dlpack(new tensor)", lambda: np.from_dlpack(torch.empty(3, 4))),
]
without_torch_table = [
    ("ferry.from_dlpack(tensor) without PyTorch's table", lambda: ferry.from_dlpack(t),
     "np.from_dlpack(tensor)", lambda: np.from_dlpack(t)),
    ("ferry.from_dlpack(new tensor) without PyTorch's table",
     lambda: ferry.from_dlpack(torch.empty(3, 4)),
     "np.from_dlpack(new tensor), table removed", lambda: np.from_dlpack(torch.empty(3, 4))),
]
for case, call, anchor, anchor_call in torch_cases:
    ours, theirs, ratio = best_pair_ns(call, anchor_call, n)
    row("python_torch", anchor, theirs)
    row("python_torch", case, ours, anchor, ratio)
del torch.Tensor.__dlpack_c_exchange_api__
try:
    for case, call, anchor, anchor_call in without_torch_table:
        ours, theirs, ratio = best_pair_ns(call, anchor_call, n)
        row("python_torch", anchor, theirs)
        row("python_torch", case, ours, anchor, ratio)
finally:
    torch.Tensor.__dlpack_c_exchange_api__ = torch_table

# The C exchange table against `__dlpack__`: the same consumer, given `h` itself, and given an
# object whose type has no table (ferry's type is immutable) and whose `__dlpack__` and
# `__dlpack_device__` are `h`'s own bound methods (the consumer calls them directly).
class WithoutTable:
    pass


bare = WithoutTable()
bare.__dlpack__, bare.__dlpack_device__ = h.__dlpack__, h.__dlpack_device__

consumers = [
    ("tvm_ffi.from_dlpack(HostArray)", lambda: tvm_ffi.from_dlpack(h),
     lambda: tvm_ffi.from_dlpack(bare)),
    ("torch.from_dlpack(HostArray)", lambda: torch.from_dlpack(h),
     lambda: torch.from_dlpack(bare)),
]
for case, call, call_without in consumers:
    ours, theirs, ratio = best_pair_ns(call, call_without, n)
    row("python_exchange", f"{case} without table", theirs)
    row("python_exchange", f"{case} with table", ours, f"{case} without table", ratio)
print(f"versions\tnumpy {np.__version__}, torch {torch.__version__}, tvm-ffi {tvm_ffi.__version__}")
