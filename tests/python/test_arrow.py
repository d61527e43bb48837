"""The Arrow PyCapsule interface: `pyarrow.array(h)` and Polars take a ferry.HostArray without
copying (a 1-D array as a primitive array, a batch as an `arrow.fixed_shape_tensor` array, a
permuted batch through the extension's `permutation`), and `ferry.from_arrow` imports pyarrow
arrays over pyarrow's own buffers; nulls and dtypes Arrow lacks are refused with typed errors."""

import gc

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch

import ferry
from conftest import numpy_values

# Every dtype both ferry and Arrow have (bool is bit-packed in Arrow: a copy each way).
ARROW_DTYPES = [
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64",
]


def values_address(arr):
    """Address of the first value of a primitive pyarrow array (its data buffer + offset)."""
    return arr.buffers()[1].address + arr.offset * arr.type.byte_width


@pytest.mark.parametrize("dtype", ARROW_DTYPES)
def test_a_1d_array_becomes_a_pyarrow_array_over_the_same_memory(dtype):
    x = numpy_values(dtype, (17,))
    h = ferry.from_dlpack(x)
    a = pa.array(h)
    assert a.type == pa.from_numpy_dtype(x.dtype)
    assert a.null_count == 0
    assert values_address(a) == h.data_ptr == x.ctypes.data
    assert np.asarray(a).tobytes() == x.tobytes()
    # ferry reads it back over the same memory.
    back = ferry.from_arrow(a)
    assert back.data_ptr == x.ctypes.data and back.readonly and back.copies == 0


@pytest.mark.parametrize("dtype", ARROW_DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "permuted"])
def test_a_batch_becomes_a_fixed_shape_tensor_array_without_copying(dtype, layout):
    x = numpy_values(dtype, (4, 3, 5))
    if layout == "permuted":
        x = x.transpose(0, 2, 1)  # rows outermost, each tensor transposed
    h = ferry.from_dlpack(x)
    a = pa.array(h)
    assert isinstance(a, pa.FixedShapeTensorArray), a.type
    assert a.type.permutation == ([1, 0] if layout == "permuted" else None)
    assert values_address(a.storage.values) == x.ctypes.data
    nd = a.to_numpy_ndarray()
    assert nd.shape == x.shape and nd.dtype == x.dtype and nd.tobytes() == x.tobytes()
    back = ferry.from_arrow(a)
    assert back.shape == x.shape and back.strides == h.strides
    assert back.data_ptr == x.ctypes.data and back.copies == 0
    assert np.asarray(back.numpy()).tobytes() == x.tobytes()


def test_torch_tensors_reach_pyarrow_through_ferry_with_one_copy():
    t = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4).permute(0, 2, 1)
    h = ferry.from_dlpack(t)  # a copy (PyTorch's export keeps the tensor, not its memory)
    a = pa.array(h)
    assert h.copies == 1 and a.type.shape == [4, 3] and a.type.permutation is None
    assert values_address(a.storage.values) == h.data_ptr
    assert np.array_equal(a.to_numpy_ndarray(), t.numpy())


def test_polars_takes_host_arrays_without_copying():
    x = numpy_values("int32", (11,))
    s = pl.Series("x", ferry.from_dlpack(x))
    assert s.dtype == pl.Int32 and s.to_list() == x.tolist()
    assert values_address(s.to_arrow()) == x.ctypes.data
    batch = numpy_values("float64", (4, 2, 3))
    t = pl.Series("t", ferry.from_dlpack(batch))
    assert t.len() == 4 and np.array_equal(t.to_numpy().reshape(4, 2, 3), batch, equal_nan=True)
    # And back: a Series' Arrow array comes into ferry without a copy.
    back = ferry.from_arrow(s.to_arrow())
    assert back.data_ptr == x.ctypes.data
    # The Series itself through its stream: one chunk, its memory.
    (chunk,) = ferry.from_arrow(s)
    assert chunk.data_ptr == x.ctypes.data


def test_layouts_that_are_no_permutation_of_row_major_are_copied_once():
    x = numpy_values("float64", (6, 4))
    for view in (x[::2], x[:, ::-1], x.T, np.broadcast_to(x[:1], (3, 4))):
        a = pa.array(ferry.from_dlpack(view))
        values = a.storage.values
        assert not (x.ctypes.data <= values_address(values) < x.ctypes.data + x.nbytes)
        assert a.to_numpy_ndarray().tobytes() == np.ascontiguousarray(view).tobytes()


def test_pyarrow_tensors_with_permutation_and_dim_names_come_in_without_copying():
    physical = numpy_values("int32", (2, 3, 4))
    typ = pa.fixed_shape_tensor(pa.int32(), [3, 4], dim_names=["H", "W"], permutation=[1, 0])
    storage = pa.FixedSizeListArray.from_arrays(pa.array(physical.ravel()), 12)
    a = pa.ExtensionArray.from_storage(typ, storage)
    h = ferry.from_arrow(a)
    assert h.shape == (2, 4, 3) and h.strides == (12, 1, 4)
    assert h.data_ptr == values_address(storage.values) and h.readonly
    assert np.array_equal(h.numpy(), a.to_numpy_ndarray())
    # A slice of the pyarrow array is a view too.
    s = ferry.from_arrow(a[1:])
    assert s.shape == (1, 4, 3) and s.data_ptr == h.data_ptr + 12 * 4


def test_the_imported_memory_outlives_the_pyarrow_array():
    a = pa.array(np.arange(1000, dtype=np.int64))
    h = ferry.from_arrow(a)
    del a
    gc.collect()
    assert h.numpy().sum() == 999 * 1000 // 2


def test_bools_are_bit_packed_once_each_way():
    x = numpy_values("bool", (3, 5))
    h = ferry.from_dlpack(x)
    a = pa.array(h)
    assert a.type.value_type == pa.bool_()
    back = ferry.from_arrow(a)
    assert back.copies == 1 and np.array_equal(back.numpy(), x)
    flat = ferry.from_arrow(pa.array([True, False, True]))
    assert flat.dtype == "bool" and flat.numpy().tolist() == [True, False, True]


def test_nulls_unsupported_types_and_dtypes_arrow_lacks_are_refused():
    with pytest.raises(ValueError, match="null"):
        ferry.from_arrow(pa.array([1.0, None]))
    with pytest.raises(TypeError, match="fixed_shape_tensor"):
        ferry.from_arrow(pa.array(["a", "b"]))
    with pytest.raises(TypeError, match="__arrow_c_array__"):
        ferry.from_arrow(np.arange(3))
    bf16 = ferry.from_dlpack(torch.ones(4, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="cast it to f32"):
        pa.array(bf16)
    c64 = ferry.from_dlpack(np.ones(3, dtype=np.complex64))
    with pytest.raises(TypeError, match="real and imaginary"):
        c64.__arrow_c_array__()
    with pytest.raises(ValueError, match="0-d"):
        pa.array(ferry.from_dlpack(np.array(1.0, dtype=np.float32)))


def test_the_array_capsules_take_a_requested_schema_by_position_or_keyword():
    """`__arrow_c_array__(requested_schema=None)`: the interface lets a producer ignore it, but
    the parameter is there by either spelling, and nothing else is."""
    h = ferry.from_dlpack(np.arange(5.0))
    schema = h.__arrow_c_schema__()
    for pair in (h.__arrow_c_array__(), h.__arrow_c_array__(None), h.__arrow_c_array__(schema),
                 h.__arrow_c_array__(requested_schema=schema)):
        assert pa.Array._import_from_c_capsule(*pair).to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(TypeError, match="at most one"):
        h.__arrow_c_array__(schema, schema)
    with pytest.raises(TypeError, match="unexpected keyword"):
        h.__arrow_c_array__(schema_requested=schema)


def test_the_schema_capsule_describes_the_array():
    h = ferry.from_dlpack(numpy_values("float32", (2, 3, 4)))
    typ = pa.DataType._import_from_c_capsule(h.__arrow_c_schema__())
    assert isinstance(typ, pa.FixedShapeTensorType) and typ.shape == [3, 4]
    assert typ == pa.array(h).type
    # Unused capsules release what they hold (no consumer moved the struct out).
    for _ in range(1000):
        h.__arrow_c_array__()
    gc.collect()


def test_a_consumed_arrow_capsule_is_refused():
    # Round 3, hole 8: an object handing out the same capsule pair twice. pyarrow moves the
    # structs out of the capsules (their `release` becomes NULL, the rest stale) and frees the
    # buffers with its array; on 5d4584c `ferry.from_arrow` then imported the released struct
    # and read freed buffers (SIGSEGV). A released struct is refused before anything is read.
    class HandsOutOnePair:
        def __init__(self, array):
            self.pair = array.__arrow_c_array__()

        def __arrow_c_array__(self, requested_schema=None):
            return self.pair

    obj = HandsOutOnePair(pa.array(np.arange(1 << 20, dtype=np.float64)))
    consumed = pa.array(obj)
    assert len(consumed) == 1 << 20
    del consumed
    gc.collect()
    with pytest.raises(ValueError, match="released already"):
        ferry.from_arrow(obj)


def test_arrow_export_of_memory_lent_to_torch_is_a_copy():
    # Re-audit of round 3 (B-F1): `.torch()` lent ferry's memory writable, and a later
    # `pa.array(h)` shared it zero-copy: PyTorch's writes changed an immutable Arrow array and
    # the read-only ferry array imported from it.
    h = ferry.from_dlpack(np.arange(4, dtype=np.int32)).copy()
    t = h.torch()
    assert t.data_ptr() == h.data_ptr
    p = pa.array(h)
    r = ferry.from_arrow(p)
    assert p.buffers()[1].address != h.data_ptr
    t.fill_(7)
    assert p.to_pylist() == [0, 1, 2, 3]
    assert np.frombuffer(r.tobytes(), np.int32).tolist() == [0, 1, 2, 3]


def test_torch_decides_and_exports_with_no_python_code_between():
    # Re-audit of round 3 (B-F2): `.torch()` checked that nothing else held the memory, then
    # called `torch.from_dlpack(h)`, whose Python code (here a profile hook) exported the
    # array to Arrow before `__dlpack__` ran; PyTorch then wrote under the Arrow array.
    import sys

    h = ferry.from_dlpack(np.arange(4, dtype=np.int32)).copy()
    held = {}

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "from_dlpack" and "p" not in held:
            held["p"] = pa.array(h)

    sys.setprofile(hook)
    try:
        t = h.torch()
    finally:
        sys.setprofile(None)
    t.fill_(9)
    assert held["p"].to_pylist() == [0, 1, 2, 3]


def test_a_bare_dltensor_lend_keeps_later_exports_from_sharing():
    # Re-audit of round 3 (B-F3): a bare DLTensor from the exchange table holds nothing, so
    # the array still looked held by its object alone, and a later Arrow export or `.torch()`
    # shared memory the C borrower writes.
    import ctypes

    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    table = get(ferry.HostArray.__dlpack_c_exchange_api__, b"dlpack_exchange_api")
    dltensor = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_void_p)(
        ctypes.c_void_p.from_address(table + 40).value
    )
    h = ferry.from_dlpack(np.arange(4, dtype=np.int32)).copy()
    out = ctypes.create_string_buffer(64)
    assert dltensor(h, out) == 0
    data = ctypes.c_void_p.from_buffer(out).value
    assert data == h.data_ptr
    # The same borrower kind may borrow again.
    assert dltensor(h, out) == 0
    p = pa.array(h)
    assert p.buffers()[1].address != data
    assert h.torch().data_ptr() != data
    ctypes.memmove(data, (ctypes.c_int32 * 4)(5, 5, 5, 5), 16)  # the C borrower writes
    assert p.to_pylist() == [0, 1, 2, 3]


def test_ferrys_own_export_imported_again_is_not_lent_as_if_held_alone():
    # Audit of round 4 (B-1): `ferry.from_dlpack(h.__dlpack__(max_version=(1, 0)))` wrapped
    # ferry's export in an owner of its own, so `.torch()` of the import shared the memory
    # writable while `h`, a read-only import and an Arrow array still read it.
    h = ferry.from_dlpack(np.arange(4, dtype=np.float32), copy=True)
    g = ferry.from_dlpack(h.__dlpack__(max_version=(1, 0)))
    r = ferry.from_dlpack(h.__dlpack__(max_version=(1, 0)))
    assert g.data_ptr == h.data_ptr == r.data_ptr
    a = pa.array(r)
    t = g.torch()
    assert t.data_ptr() != h.data_ptr
    t.fill_(42.0)
    assert np.from_dlpack(r).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert a.to_pylist() == [0.0, 1.0, 2.0, 3.0]


def test_saved_files_hold_valid_bools_only(tmp_path):
    # Audit of round 4 (B-2): save_npy, save_npz and save_safetensors wrote bytes other than 0
    # and 1 into bool arrays, which other readers then read as invalid bools.
    b = ferry.from_dlpack(torch.tensor([True, False, True, True])).copy()
    torch.from_dlpack(b).view(torch.uint8)[0] = 2  # a consumer writes a byte that is no bool
    for save, path in [
        (lambda p: ferry.save_npy(p, b), tmp_path / "b.npy"),
        (lambda p: ferry.save_npz(p, {"b": b}), tmp_path / "b.npz"),
        (lambda p: ferry.save_safetensors(p, {"b": b}), tmp_path / "b.safetensors"),
    ]:
        with pytest.raises(ValueError, match="bool"):
            save(path)


@pytest.mark.parametrize("lend", ["torch", "numpy"])
def test_arrow_export_of_a_reimport_of_lent_memory_is_a_copy(lend):
    # Audit of round 4 (B2-1): memory lent writable (`.torch()`, a writable NumPy import),
    # then re-imported from ferry's own `__dlpack__` and exported to Arrow: the re-import was
    # read-only by its flag, so Arrow shared memory the borrower wrote.
    h = ferry.from_dlpack(np.arange(4, dtype=np.float32)).copy()
    w = h.torch() if lend == "torch" else np.from_dlpack(h)
    r = ferry.from_dlpack(h.__dlpack__(max_version=(1, 0)))
    p = pa.array(r)
    assert p.buffers()[1].address != h.data_ptr
    w[0] = 42.0
    assert p.to_pylist() == [0.0, 1.0, 2.0, 3.0]


def test_a_refused_save_leaves_the_existing_file_as_it_was(tmp_path):
    # Audit of round 4 (B2-3): a save refused for its bools truncated the file it replaced.
    b = ferry.from_dlpack(torch.tensor([True, False])).copy()
    torch.from_dlpack(b).view(torch.uint8)[0] = 2
    for name, save in [("keep.npy", lambda p: ferry.save_npy(p, b)),
                       ("keep.npz", lambda p: ferry.save_npz(p, {"b": b}))]:
        path = tmp_path / name
        path.write_bytes(b"previous contents")
        with pytest.raises(ValueError, match="bool"):
            save(path)
        assert path.read_bytes() == b"previous contents"


def test_duckdb_reads_a_tensor_column_as_a_fixed_size_array_with_its_values():
    """DuckDB scans a pyarrow table over ferry's column through the Arrow C stream: the
    `arrow.fixed_shape_tensor` storage (a FixedSizeList) becomes a fixed-size ARRAY column."""
    x = numpy_values("float32", (5, 4, 8))
    h = ferry.from_dlpack(x)
    table = pa.table({"id": pa.array(np.arange(5)), "embedding": pa.array(h)})
    con = duckdb.connect()
    con.register("t", table)
    [(kind,)] = con.sql("SELECT DISTINCT typeof(embedding) FROM t").fetchall()
    assert kind == "FLOAT[32]", kind
    rows = con.sql("SELECT id, embedding FROM t ORDER BY id").fetchall()
    got = np.array([r[1] for r in rows], dtype=np.float32)
    assert np.array_equal(got, x.reshape(5, 32), equal_nan=True)
    # DuckDB computes on it as on any array column.
    sums = con.sql("SELECT list_sum(embedding::DOUBLE[]) FROM t ORDER BY id").fetchall()
    want = x.reshape(5, 32).astype(np.float64).sum(axis=1)
    assert np.allclose([s[0] for s in sums], want, rtol=1e-12, equal_nan=True)
    # And back: DuckDB's Arrow result is the bare FixedSizeList storage (DuckDB drops the
    # extension); given its tensor type again, ferry reads it over DuckDB's buffer.
    out = con.sql("SELECT embedding FROM t ORDER BY id").to_arrow_table()
    storage = out["embedding"].combine_chunks()
    assert storage.type == pa.list_(pa.field("", pa.float32()), 32) or storage.type.list_size == 32
    tensors = pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), (4, 8)), storage)
    back = ferry.from_arrow(tensors)
    assert back.shape == (5, 4, 8) and back.copies == 0
    assert np.array_equal(np.from_dlpack(back), x, equal_nan=True)
