"""Timing shared by the Python scripts of `cargo xtask bench`: the median of repeated calls
after a warm-up call (numpy_transpose.py, pyarrow_parquet.py, compare_baselines.py), and the
best of interleaved rounds of a case and its baseline with their round-by-round ratio
(python_handoff.py, python_extension.py)."""
import statistics
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


def round_ns(call, n):
    start = time.perf_counter_ns()
    for _ in range(n):
        call()
    return (time.perf_counter_ns() - start) / n


def best_pair_ns(case, baseline, n, rounds=41, setup=(lambda: None, lambda: None)):
    """Best per-call time of `case` and of `baseline`, their rounds interleaved (the first of
    each pair alternating), and the median over the rounds of the case's time over the
    baseline's; `setup` runs before each round of the case and of the baseline respectively."""
    best = [float("inf"), float("inf")]
    ratios = []
    for r in range(rounds + 1):
        ns = [0.0, 0.0]
        for i in (0, 1) if r % 2 else (1, 0):
            setup[i]()
            ns[i] = round_ns((case, baseline)[i], n if r else min(n, 500))
        if r:  # round 0 is the warm-up
            best = [min(b, x) for b, x in zip(best, ns)]
            ratios.append(ns[0] / ns[1])
    return best[0], best[1], statistics.median(ratios)


def row(group, case, ns, baseline="", ratio=None):
    ratio = "" if ratio is None else f"{ratio:.4f}"
    print(f"row\t{group}\t{case}\t{ns:.1f}\t{baseline}\t{ratio}")
