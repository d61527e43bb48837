"""Reads a Parquet dataset ferry wrote with the readers and engines users reach for, and checks
each one's answers against the ones ferry computed in Rust (EXPECTED_JSON, kept beside the
dataset: a dataset root holds nothing but its partitions).

The dataset (written by `cargo xtask demo`, and by ferry's tests) is hive-partitioned by
backend (`backend=candle/part-0.parquet`, ...), with columns
  embedding: arrow.fixed_shape_tensor<float32> (the framework's tensors),
  norm:      float64 (each embedding's L2 norm, computed in Rust).

Readers, each opening the root plainly (no option beyond hive partitioning):
- pyarrow.dataset, DuckDB (`read_parquet('ROOT/*/*.parquet', hive_partitioning=true)`) and
  Polars (`read_parquet(ROOT, hive_partitioning=True)`): rows and mean norm per partition.
Engines that distribute work:
- DataFusion: SQL `count(*)` and `avg(norm)` per backend partition.
- Ray Data (local mode, 2 CPUs): `read_parquet`, then `map_batches` receives the tensor column
  as a NumPy array of shape (rows, *tensor shape) and sums each embedding.

Usage: python arrow_engines.py DATASET_DIR EXPECTED_JSON
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


def check_counts_and_means(reader, got, expected):
    """`got`: {backend: (rows, mean norm)} as `reader` computed it."""
    assert sorted(got) == sorted(expected), (reader, sorted(got), sorted(expected))
    for backend, (n, mean) in sorted(got.items()):
        want = expected[backend]
        assert n == want["rows"], (reader, backend, n, want["rows"])
        assert close(mean, want["mean_norm"], 1e-12), (reader, backend, mean, want["mean_norm"])
        print(f"{reader + ':':<16}backend={backend}: {n} rows, mean norm {mean:.6f} (ferry: {want['mean_norm']:.6f})")


def pyarrow_dataset_check(root, expected):
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    table = pads.dataset(root, format="parquet", partitioning="hive").to_table()
    got = {}
    for backend in pc.unique(table["backend"]).to_pylist():
        norms = table.filter(pc.equal(table["backend"], backend))["norm"]
        got[backend] = (len(norms), pc.mean(norms).as_py())
    check_counts_and_means("pyarrow.dataset", got, expected)


def duckdb_check(root, expected):
    import duckdb

    files = f"read_parquet('{root}/*/*.parquet', hive_partitioning=true)"
    rows = duckdb.sql(f"SELECT backend, count(*), avg(norm) FROM {files} GROUP BY backend").fetchall()
    check_counts_and_means("duckdb", {b: (n, m) for b, n, m in rows}, expected)
    # From Parquet the tensor column is a list of the tensors' values, row-major.
    [(kind,)] = duckdb.sql(f"SELECT DISTINCT typeof(embedding) FROM {files}").fetchall()
    assert kind == "FLOAT[]", kind
    sums = duckdb.sql(
        f"SELECT backend, sum(list_sum(embedding::DOUBLE[])) FROM {files} GROUP BY backend"
    ).fetchall()
    for backend, total in sums:
        assert close(total, expected[backend]["embedding_sum"], 1e-9), (backend, total)


def polars_check(root, expected):
    import polars as pl

    df = pl.read_parquet(root, hive_partitioning=True)
    agg = df.group_by("backend").agg(pl.len().alias("n"), pl.col("norm").mean().alias("mean"))
    got = {r["backend"]: (r["n"], r["mean"]) for r in agg.iter_rows(named=True)}
    check_counts_and_means("polars", got, expected)


def datafusion_check(root, expected):
    import datafusion
    import pyarrow as pa

    ctx = datafusion.SessionContext()
    ctx.register_parquet("ds", root, table_partition_cols=[("backend", pa.string())])
    got = ctx.sql(
        "SELECT backend, count(*) AS n, avg(norm) AS mean_norm FROM ds GROUP BY backend"
    ).to_pydict()
    check_counts_and_means(
        "datafusion", {b: (n, m) for b, n, m in zip(got["backend"], got["n"], got["mean_norm"])}, expected
    )


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
        print(f"{'ray data:':<16}backend={backend}: sum of {counts[backend]} embeddings {total:.6f} (ferry: {want['embedding_sum']:.6f})")


def main(root, expected_path):
    with open(expected_path) as f:
        expected = json.load(f)
    backends = expected["backends"]
    pyarrow_dataset_check(root, backends)
    duckdb_check(root, backends)
    polars_check(root, backends)
    print("readers: pyarrow.dataset's, DuckDB's and Polars' answers equal ferry's")
    datafusion_check(root, backends)
    ray_check(root, backends, tuple(expected["embedding_shape"]))
    print("engines: DataFusion's and Ray Data's answers equal ferry's")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
