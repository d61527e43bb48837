"""ferry inside the engines' workers: a Ray Data `map_batches` function and a DataFusion scalar
UDF receive a tensor column as Arrow, read it with `ferry.from_arrow` over Arrow's own buffer
(no copy), run PyTorch or NumPy on it, and hand a tensor column back. Ray runs in local mode
with real worker processes, which import the installed wheel themselves."""

import os
import sys

import numpy as np
import pyarrow as pa

import ferry

# Ray: no usage reporting, no token file, warnings only (the run must be quiet and offline).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")


def embeddings():
    """64 embeddings of 4×8 and a table of them as an `arrow.fixed_shape_tensor` column."""
    x = np.random.default_rng(7).standard_normal((64, 4, 8)).astype(np.float32)
    return x, pa.table({"id": np.arange(64), "embedding": pa.array(ferry.from_dlpack(x))})


def values_address(arr):
    """Address of the first value of a fixed-shape tensor array's storage."""
    values = arr.storage.values
    return values.buffers()[1].address + values.offset * values.type.byte_width


def unit_rows(batch: pa.Table) -> pa.Table:
    """The README's worker function: each embedding scaled to unit length by PyTorch."""
    import torch

    import numpy as np

    column = batch.column("embedding")
    x = ferry.from_arrow(column, combine=True)  # (rows, 4, 8); one chunk: Arrow's buffer, no copy
    t = torch.from_dlpack(x)  # PyTorch over the same memory
    unit = torch.nn.functional.normalize(t.reshape(len(t), -1), dim=1)
    one_chunk = column.num_chunks == 1
    shared = one_chunk and x.copies == 0 and x.data_ptr == values_address(column.chunk(0)) == t.data_ptr()
    rows = len(t)
    unit_host = ferry.from_dlpack(unit)  # one recorded copy: PyTorch may still write `unit`
    out = ferry.record_batch(
        {
            "id": batch["id"].combine_chunks(),
            "unit": unit_host,  # arrow.fixed_shape_tensor again, over ferry's copy
            "shared": np.full(rows, shared),
            "copies": np.full(rows, unit_host.copies),
            "pid": np.full(rows, os.getpid()),
        }
    )
    return pa.table(out)  # through ferry's __arrow_c_stream__


def test_ray_data_workers_read_tensor_columns_without_copying_and_return_tensor_columns():
    import ray

    x, table = embeddings()
    # The workers get `unit_rows` by value: they need not import this test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_arrow(table).repartition(4)
        out = pa.concat_tables(
            ray.get(ds.map_batches(unit_rows, batch_format="pyarrow", batch_size=16).to_arrow_refs())
        ).sort_by("id")
    finally:
        ray.shutdown()
    # The batches ran in worker processes, not here.
    assert os.getpid() not in set(out["pid"].to_pylist())
    # In each worker the input column, ferry's array and the torch tensor were one memory,
    # and the output was ferry's one copy of PyTorch's result.
    assert set(out["shared"].to_pylist()) == {True}
    assert set(out["copies"].to_pylist()) == {1}
    unit = out["unit"].combine_chunks()
    assert isinstance(unit.type, pa.FixedShapeTensorType) and unit.type.shape == [32]
    flat = x.reshape(64, -1).astype(np.float64)
    want = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    assert np.allclose(unit.to_numpy_ndarray(), want, rtol=1e-5, atol=1e-6)


def test_a_datafusion_udf_gets_the_extension_typed_column_and_reads_it_without_copying():
    import datafusion
    from datafusion import udf

    x, table = embeddings()
    seen = []

    def norms(arr: pa.Array) -> pa.Array:
        seen.append(arr.type)
        h = ferry.from_arrow(arr)
        seen.append(h.copies == 0 and h.data_ptr == values_address(arr))
        v = np.from_dlpack(h).reshape(len(h), -1).astype(np.float64)
        return pa.array(np.linalg.norm(v, axis=1))

    ctx = datafusion.SessionContext()
    ctx.register_record_batches("t", [table.to_batches()])
    tensor_type = table.schema.field("embedding").type
    ctx.register_udf(udf(norms, [tensor_type], pa.float64(), "immutable", name="norms"))
    got = ctx.sql("SELECT id, norms(embedding) AS n FROM t ORDER BY id").to_pydict()
    # DataFusion 55 hands the UDF the column with its extension type, so ferry reads the
    # tensors' shape from it.
    assert seen and all(isinstance(t, pa.FixedShapeTensorType) for t in seen[::2]), seen
    assert all(seen[1::2]), "ferry copied the UDF's input"
    assert got["id"] == list(range(64))
    assert np.allclose(got["n"], np.linalg.norm(x.reshape(64, -1).astype(np.float64), axis=1))
