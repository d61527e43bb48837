"""Shared helpers of ferry's Python-side conformance tests: dtypes, layouts and value makers.

The tests run against the `ferry` wheel that `cargo xtask python` builds and installs into a
fresh venv, and the real NumPy, PyTorch and tvm-ffi of the provisioned Python.
"""

import ctypes
import gc

import numpy as np
import pytest
import torch

import ferry

NUMPY_DTYPES = [
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
]

TORCH_DTYPES = {
    "bool": torch.bool, "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16,
    "uint16": torch.uint16, "int32": torch.int32, "uint32": torch.uint32, "int64": torch.int64,
    "uint64": torch.uint64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float64": torch.float64, "complex64": torch.complex64,
    "complex128": torch.complex128,
}


def numpy_values(dtype, shape, seed=0):
    """Random values of `dtype` (NaN and infinities included for floats) in a fresh array."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dtype == "bool":
        return (rng.integers(0, 2, n) == 1).reshape(shape)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True).reshape(shape)
    if dtype.startswith("complex"):
        part = "float32" if dtype == "complex64" else "float64"
        out = np.empty(shape, dtype)
        out.real, out.imag = numpy_values(part, shape, seed), numpy_values(part, shape, seed + 1)
        return out
    values = rng.standard_normal(n).astype(dtype) * 100
    if n >= 3:
        values[:3] = [np.nan, np.inf, -0.0]
    return values.reshape(shape)


# Layouts of a (4, 5, 6) base array, as NumPy makes them.
NUMPY_LAYOUTS = {
    "contiguous": lambda a: a,
    "transposed": lambda a: a.transpose(2, 0, 1),
    "offset_slice": lambda a: a[1:, 2:4, 1:],
    "negative_stride": lambda a: a[::-1, :, ::-2],
    "broadcast": lambda a: np.broadcast_to(a[:1, 2:3, :], (3, 4, 6)),
    "zero_d": lambda a: a[1, 2, 3, ...],
    "empty": lambda a: a[:, :0, :],
}

# The same layouts as PyTorch makes them (PyTorch has no negative strides).
TORCH_LAYOUTS = {
    "contiguous": lambda t: t,
    "transposed": lambda t: t.permute(2, 0, 1),
    "offset_slice": lambda t: t[1:, 2:4, 1:],
    "broadcast": lambda t: t[:1, 2:3, :].expand(3, 4, 6),
    "zero_d": lambda t: t[1, 2, 3],
    "empty": lambda t: t[:, :0, :],
}


def numpy_case(dtype, layout, seed=0):
    base = numpy_values(dtype, (4, 5, 6), seed)
    return base, NUMPY_LAYOUTS[layout](base)


def torch_case(dtype, layout, seed=0):
    """A tensor over memory PyTorch allocated (a `torch.from_numpy` tensor is NumPy's memory,
    which ferry imports as a copy), viewed with `layout`."""
    if dtype == "bfloat16":
        base = torch.from_numpy(numpy_values("float32", (4, 5, 6), seed)).to(torch.bfloat16)
    else:
        base = torch.from_numpy(numpy_values(dtype, (4, 5, 6), seed)).clone()
    return base, TORCH_LAYOUTS[layout](base)


def numpy_ptr(a):
    return a.__array_interface__["data"][0]


def element_strides(a):
    return tuple(s // a.itemsize for s in a.strides)


def torch_bytes(t):
    """The row-major bytes of a tensor, for bit-exact comparisons (bf16 included)."""
    flat = t.contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    if flat.dtype.is_complex:
        flat = torch.view_as_real(flat).reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def capsule_name(capsule):
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    return get_name(capsule).decode()


@pytest.fixture
def no_leaks():
    """Fails the test if any ferry export is still alive after everything was dropped."""
    gc.collect()
    before = ferry.live_exports()
    yield
    gc.collect()
    assert ferry.live_exports() == before, "a ferry export's deleter did not run"
