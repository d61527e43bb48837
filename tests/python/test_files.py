"""Files for legacy tools: .npy/.npz and safetensors written by ferry load in NumPy and the
safetensors package (NumPy and PyTorch flavours), and theirs load in ferry."""

from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import ferry
from conftest import NUMPY_DTYPES, TORCH_DTYPES, element_strides, numpy_values, torch_bytes

LAYOUTS = {
    "c_order": lambda a: a,
    "fortran": lambda a: np.asfortranarray(a),
    "strided": lambda a: a[::-1, 1::2],
    "zero_d": lambda a: a[1, 1, ...],
    "empty": lambda a: a[:0],
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_npy_both_ways(tmp_path, dtype, layout):
    x = LAYOUTS[layout](numpy_values(dtype, (3, 4)))
    ours, theirs = tmp_path / "ferry.npy", tmp_path / "numpy.npy"
    ferry.save_npy(ours, x)
    y = np.load(ours)
    assert y.dtype == x.dtype and y.shape == x.shape and y.tobytes() == x.tobytes()
    np.save(theirs, x)
    for h in (ferry.load_npy(theirs), ferry.load_npy(theirs, mmap=True)):
        assert h.dtype == x.dtype.name and h.shape == x.shape and h.tobytes() == x.tobytes()
    if layout == "fortran":
        # Fortran order is read as it is stored: column-major strides, no reordering.
        assert ferry.load_npy(theirs, mmap=True).strides == element_strides(x)
        assert np.load(ours).flags.f_contiguous


def test_npy_mmap_is_zero_copy_and_read_only(tmp_path):
    x = numpy_values("float64", (256, 64))
    np.save(tmp_path / "a.npy", x)
    h = ferry.load_npy(tmp_path / "a.npy", mmap=True)
    assert h.readonly and h.copies == 0
    assert h.data_ptr % 64 == 0  # NumPy aligns the data; the map is page aligned
    y = np.from_dlpack(h)
    assert not y.flags.writeable and y.tobytes() == x.tobytes()


def test_npz_both_ways(tmp_path):
    arrays = {d: numpy_values(d, (5, 3), seed=i) for i, d in enumerate(NUMPY_DTYPES)}
    for compressed in (False, True):
        path = tmp_path / f"ferry-{compressed}.npz"
        ferry.save_npz(path, arrays, compressed=compressed)
        with np.load(path) as loaded:
            assert sorted(loaded.files) == sorted(arrays)
            for name, x in arrays.items():
                assert loaded[name].tobytes() == x.tobytes() and loaded[name].dtype == x.dtype
        path = tmp_path / f"numpy-{compressed}.npz"
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        loaded = ferry.load_npz(path)
        assert sorted(loaded) == sorted(arrays)
        for name, x in arrays.items():
            assert loaded[name].tobytes() == x.tobytes() and loaded[name].dtype == x.dtype.name


# safetensors for Python (0.6) has no complex dtypes; ferry's complex64 round trip is a Rust test.
SAFETENSORS_NUMPY = [d for d in NUMPY_DTYPES if not d.startswith("complex")]


def test_safetensors_from_and_to_numpy(tmp_path):
    tensors = {d: numpy_values(d, (4, 3), seed=i) for i, d in enumerate(SAFETENSORS_NUMPY)}
    tensors["transposed"] = numpy_values("float32", (3, 5)).T
    theirs = tmp_path / "numpy.safetensors"
    safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, theirs,
                                metadata={"producer": "numpy"})
    for mmap in (True, False):
        loaded, metadata = ferry.load_safetensors(theirs, mmap=mmap)
        assert metadata == {"producer": "numpy"}
        assert sorted(loaded) == sorted(tensors)
        for name, x in tensors.items():
            h = loaded[name]
            assert h.dtype == x.dtype.name and h.shape == x.shape and h.tobytes() == x.tobytes()
            assert h.copies == 0 and h.readonly == mmap
    ours = tmp_path / "ferry.safetensors"
    ferry.save_safetensors(ours, tensors, {"producer": "ferry"})
    back = safetensors.numpy.load_file(ours)
    for name, x in tensors.items():
        assert back[name].dtype == x.dtype and back[name].tobytes() == np.ascontiguousarray(x).tobytes()


def test_safetensors_from_and_to_torch(tmp_path):
    names = [d for d in TORCH_DTYPES if not d.startswith("complex")]
    tensors = {}
    for i, name in enumerate(names):
        if name == "bfloat16":
            tensors[name] = torch.randn(6, 2).to(torch.bfloat16)
        else:
            tensors[name] = torch.from_numpy(numpy_values(name, (6, 2), seed=i))
    theirs = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(tensors, theirs)
    loaded, _ = ferry.load_safetensors(theirs)
    for name, t in tensors.items():
        assert loaded[name].dtype == name and loaded[name].tobytes() == torch_bytes(t)
    # fp8 travels as a raw dtype and comes back bit-exact.
    fp8 = {"e4m3": torch.randn(8).to(torch.float8_e4m3fn), "e5m2": torch.randn(8).to(torch.float8_e5m2)}
    safetensors.torch.save_file(fp8, tmp_path / "fp8.safetensors")
    raw, _ = ferry.load_safetensors(tmp_path / "fp8.safetensors")
    ferry.save_safetensors(tmp_path / "fp8-back.safetensors", raw)
    back = safetensors.torch.load_file(tmp_path / "fp8-back.safetensors")
    for name, t in fp8.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name].view(torch.uint8), t.view(torch.uint8))
    ours = tmp_path / "ferry.safetensors"
    ferry.save_safetensors(ours, {k: ferry.from_dlpack(v) for k, v in tensors.items()})
    back = safetensors.torch.load_file(ours)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch_bytes(back[name]) == torch_bytes(t)


def test_file_errors_are_typed(tmp_path):
    with pytest.raises(FileNotFoundError):
        ferry.load_npy(tmp_path / "missing.npy")
    with pytest.raises(TypeError, match="bf16"):
        ferry.save_npy(tmp_path / "bf16.npy", torch.zeros(2, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="complex128"):
        ferry.save_safetensors(tmp_path / "c.safetensors", {"c": np.zeros(2, np.complex128)})
    np.save(tmp_path / "big.npy", np.arange(4, dtype=">i4"))
    with pytest.raises(ValueError, match="big-endian"):
        ferry.load_npy(tmp_path / "big.npy")
    np.save(tmp_path / "cut.npy", np.arange(100.0))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-8])
    with pytest.raises(ValueError, match="800 data bytes"):
        ferry.load_npy(tmp_path / "cut.npy")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="safetensors"):
        ferry.load_safetensors(tmp_path / "junk.safetensors")


def test_writes_through_torch_never_reach_a_mapped_file(tmp_path):
    x = np.arange(4096, dtype=np.float32)
    np.save(tmp_path / "a.npy", x)
    h = ferry.load_npy(tmp_path / "a.npy", mmap=True)
    assert h.readonly
    # .torch() gives PyTorch (which has no read-only tensors) a copy of a read-only array.
    assert h.torch().data_ptr() != h.data_ptr
    # torch.from_dlpack ignores the READ_ONLY flag and shares the pages; ferry maps files
    # copy-on-write, so the write neither faults nor changes the file.
    t = torch.from_dlpack(h)
    assert t.data_ptr() == h.data_ptr
    t += 1
    assert np.load(tmp_path / "a.npy").tobytes() == x.tobytes()


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Python: NumPy and PyTorch", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) == 3
    monkeypatch.chdir(tmp_path)
    safetensors.torch.save_file({"weight": torch.randn(4, 3)}, "model.safetensors")
    scope = {}
    exec(example, scope)
    a, t, h = scope["a"], scope["t"], scope["h"]
    assert a.__array_interface__["data"][0] == t.data_ptr() == h.data_ptr
    assert torch.equal(t, safetensors.torch.load_file("model.safetensors")["weight"])


def test_saving_a_dict_that_a_value_changes_is_no_panic(tmp_path):
    # Final audit of round 3: save_npz and save_safetensors iterated the dict while each
    # value's `__dlpack__` ran, and one that adds keys raised pyo3's PanicException ("dictionary
    # changed size during iteration"), a BaseException. The items are taken first.
    d = {}

    class Grows:
        def __dlpack__(self, **kwargs):
            for i in range(20):
                d[f"k{i}"] = np.zeros(1)
            return np.zeros(2).__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return (1, 0)

    d["a"] = Grows()
    d["b"] = np.arange(3.0)
    ferry.save_npz(tmp_path / "x.npz", d)
    assert sorted(np.load(tmp_path / "x.npz").files) == ["a", "b"]
    d.clear()
    d["a"] = Grows()
    ferry.save_safetensors(tmp_path / "x.safetensors", d)
    assert sorted(ferry.load_safetensors(tmp_path / "x.safetensors")[0]) == ["a"]


def test_an_npz_whose_members_name_one_array_twice_is_refused_not_merged(tmp_path):
    # Audit round 7 (helper 27): "a.npy" and "a" are both the array "a", and a dict of the
    # members would keep only the last.
    import io
    import zipfile

    path = tmp_path / "twice.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, value in (("a.npy", np.zeros(2)), ("a", np.ones(3))):
            buf = io.BytesIO()
            np.save(buf, value)
            z.writestr(name, buf.getvalue())
    with pytest.raises(ValueError, match="two members are named 'a'|two members are named \"a\""):
        ferry.load_npz(path)
