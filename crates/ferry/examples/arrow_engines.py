"""Runs two engines that distribute work over a Parquet dataset ferry wrote, and checks their
answers against the ones ferry computed in Rust (`expected.json` in the dataset folder).

The dataset (written by `cargo xtask demo`, and by ferry's tests) is hive-partitioned by
backend (`backend=candle/part-0.parquet`, ...), with columns
  embedding: arrow.fixed_shape_tensor<float32> (the framework's tensors),
  norm:      float64 (each embedding's L2 norm, computed in Rust).

- DataFusion: SQL `count(*)` and `avg(norm)` per backend partition.
- Ray Data (local mode, 2 CPUs): `read_parquet`, then `map_batches` receives the tensor column
  as a NumPy array of shape (rows, *tensor shape) and sums each embedding.

Usage: python arrow_engines.py DATASET_DIR
"""

import json
import math
import os
import sys

# Ray: no usage reporting, no token file, warnings only (the run must be quiet and offline).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")


def close(a, b, rel):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def datafusion_check(root, expected):
    import datafusion
    import pyarrow as pa

    ctx = datafusion.SessionContext()
    ctx.register_parquet("ds", root, table_partition_cols=[("backend", pa.string())])
    got = ctx.sql(
        "SELECT backend, count(*) AS n, avg(norm) AS mean_norm "
        "FROM ds GROUP BY backend ORDER BY backend"
    ).to_pydict()
    assert sorted(got["backend"]) == sorted(expected), (got["backend"], list(expected))
    for backend, n, mean in zip(got["backend"], got["n"], got["mean_norm"]):
        want = expected[backend]
        assert n == want["rows"], (backend, n, want["rows"])
        assert close(mean, want["mean_norm"], 1e-12), (backend, mean, want["mean_norm"])
        print(f"datafusion: backend={backend}: {n} rows, mean norm {mean:.6f} (ferry: {want['mean_norm']:.6f})")


def ray_check(root, expected, shape):
    import numpy as np
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False

        def per_batch(batch):
            emb = batch["embedding"]
            assert isinstance(emb, np.ndarray), type(emb)
            assert emb.dtype == np.float32 and emb.shape[1:] == shape, (emb.dtype, emb.shape)
            sums = emb.reshape(len(emb), -1).sum(axis=1, dtype=np.float64)
            return {"backend": batch["backend"], "sum": sums}

        rows = ray.data.read_parquet(root).map_batches(per_batch, batch_format="numpy").take_all()
    finally:
        ray.shutdown()
    totals = {}
    counts = {}
    for row in rows:
        totals[row["backend"]] = totals.get(row["backend"], 0.0) + float(row["sum"])
        counts[row["backend"]] = counts.get(row["backend"], 0) + 1
    assert sorted(totals) == sorted(expected), (list(totals), list(expected))
    for backend, total in sorted(totals.items()):
        want = expected[backend]
        assert counts[backend] == want["rows"], (backend, counts[backend], want["rows"])
        assert close(total, want["embedding_sum"], 1e-9), (backend, total, want["embedding_sum"])
        print(f"ray data:   backend={backend}: sum of {counts[backend]} embeddings {total:.6f} (ferry: {want['embedding_sum']:.6f})")


def main(root):
    with open(os.path.join(root, "expected.json")) as f:
        expected = json.load(f)
    backends = expected["backends"]
    datafusion_check(root, backends)
    ray_check(root, backends, tuple(expected["embedding_shape"]))
    print("engines: DataFusion's and Ray Data's answers equal ferry's")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
