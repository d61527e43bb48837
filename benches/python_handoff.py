"""Python hand-off timings for `cargo xtask bench`, in one process, against the installed wheel:
each ferry call beside the NumPy or PyTorch call doing the same job, and DLPack 1.3's C
exchange API against the `__dlpack__` call it replaces.

Prints tab-separated `row GROUP CASE NANOSECONDS BASELINE` lines: per call, the best of 41
rounds of N calls (N = the first argument) after a warm-up, with the rounds of a case and its
baseline interleaved so that drift on a shared machine hits both alike. Many short rounds rather
than a few long ones: on a shared 2-core machine a long round rarely runs undisturbed, and the
best round is the estimate of the undisturbed time.
"""

import sys
import time

import numpy as np
import torch
import tvm_ffi

import ferry


def round_ns(call, n):
    start = time.perf_counter_ns()
    for _ in range(n):
        call()
    return (time.perf_counter_ns() - start) / n


def best_pair_ns(case, baseline, n, rounds=41, setup=(lambda: None, lambda: None)):
    """Best per-call time of `case` and of `baseline`, their rounds interleaved; `setup` runs
    before each round of the case and of the baseline respectively."""
    best = [float("inf"), float("inf")]
    for r in range(rounds + 1):
        for i, call in enumerate((case, baseline)):
            setup[i]()
            ns = round_ns(call, n if r else min(n, 500))
            if r:  # round 0 is the warm-up
                best[i] = min(best[i], ns)
    return best


def row(group, case, ns, baseline=""):
    print(f"row\t{group}\t{case}\t{ns:.1f}\t{baseline}")


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
    ours, theirs = best_pair_ns(call, anchor_call, n)
    row("python_handoff", anchor, theirs)
    row("python_handoff", case, ours, anchor)

# The C exchange table against `__dlpack__`: the same consumer, with the type attribute there and
# removed (restored afterwards).
table = ferry.HostArray.__dlpack_c_exchange_api__


def with_table():
    ferry.HostArray.__dlpack_c_exchange_api__ = table


def without_table():
    if hasattr(ferry.HostArray, "__dlpack_c_exchange_api__"):
        del ferry.HostArray.__dlpack_c_exchange_api__


consumers = [
    ("tvm_ffi.from_dlpack(HostArray)", lambda: tvm_ffi.from_dlpack(h)),
    ("torch.from_dlpack(HostArray)", lambda: torch.from_dlpack(h)),
]
try:
    for case, call in consumers:
        ours, theirs = best_pair_ns(call, call, n, setup=(with_table, without_table))
        row("python_exchange", f"{case} without table", theirs)
        row("python_exchange", f"{case} with table", ours, f"{case} without table")
finally:
    with_table()
print(f"versions\tnumpy {np.__version__}, torch {torch.__version__}, tvm-ffi {tvm_ffi.__version__}")
