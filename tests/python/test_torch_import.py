"""`ferry.from_dlpack` of PyTorch tensors beyond the DLPack protocol: the import holds the
tensor's storage, made non-resizable, so `set_` and `resize_` on the source cannot free what it
reads; the negative bit is refused; and PyTorch's C exchange table (here from tvm-ffi's add-on
for PyTorch 2.9) replaces `Tensor.__dlpack__` only where it gives the same tensor."""

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import tvm_ffi  # noqa: F401  (sets torch.Tensor.__dlpack_c_exchange_api__ on PyTorch 2.9)

import ferry
from conftest import torch_bytes

# The two ways ferry asks PyTorch: through the exchange table (a plain tensor, `copy` not
# given), and through `Tensor.__dlpack__` (any `copy` argument skips the table).
PATHS = {
    "table": lambda t: ferry.from_dlpack(t),
    "dunder_dlpack": lambda t: ferry.from_dlpack(t, copy=False),
}


def torch_made(dtype, n=1 << 20):
    """A tensor whose storage PyTorch allocated itself (resizable, unlike `torch.from_numpy`'s),
    of 4 MiB for f32: large enough that freeing it unmaps the pages."""
    values = torch.arange(n, dtype=torch.float32) % 251
    return values.to(dtype) if dtype != torch.float32 else values


@pytest.fixture
def dunder_dlpack_calls(monkeypatch):
    """The type of each tensor whose `torch.Tensor.__dlpack__` ferry called during the test (the
    outer call only: for a subclass, PyTorch's `__torch_function__` calls it once more)."""
    calls = []
    depth = [0]
    original = torch.Tensor.__dlpack__

    def counting(self, *args, **kwargs):
        if depth[0] == 0:
            calls.append(type(self))
        depth[0] += 1
        try:
            return original(self, *args, **kwargs)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(torch.Tensor, "__dlpack__", counting)
    return calls


def test_pytorch_publishes_its_exchange_table_here():
    # Without it the "table" cases below would test `__dlpack__` twice.
    assert hasattr(torch.Tensor, "__dlpack_c_exchange_api__")


@pytest.mark.parametrize("path", PATHS)
def test_import_outlives_set_on_the_source_tensor(path):
    t = torch_made(torch.float32)
    expected = t.clone()
    h = PATHS[path](t)
    # PyTorch's own export keeps only the tensor: `set_` would free the 4 MiB storage here,
    # and np.from_dlpack(t) of the same tensor reads unmapped memory (a crash).
    t.set_(torch.zeros(3))
    gc.collect()
    reuse = [torch.full((1 << 20,), 7.0) for _ in range(4)]
    assert torch.equal(torch.from_dlpack(h), expected)
    assert t.tolist() == [0.0, 0.0, 0.0] and len(reuse) == 4


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16, torch.bool, torch.complex64, torch.int16],
    ids=str,
)
def test_import_makes_a_growing_resize_fail(path, dtype):
    t = torch_made(dtype, 4096)
    assert t.untyped_storage().resizable()
    expected = torch_bytes(t.clone())
    h = PATHS[path](t)
    assert not t.untyped_storage().resizable()
    with pytest.raises(RuntimeError, match="not resizable"):
        t.resize_(1 << 20)
    with pytest.raises(RuntimeError, match="not resizable"):
        t.untyped_storage().resize_(1 << 22)
    t.resize_(16)  # shrinking never reallocates, and stays allowed
    assert h.tobytes() == expected


def test_a_view_import_holds_and_pins_its_base_storage():
    base = torch_made(torch.float32)
    view = base[1000:2000:3]
    expected = view.clone()
    h = ferry.from_dlpack(view)
    with pytest.raises(RuntimeError, match="not resizable"):
        base.resize_(1 << 22)
    view.set_(torch.zeros(1))
    base.set_(torch.zeros(1))
    del base, view
    gc.collect()
    reuse = [torch.full((1 << 20,), 7.0) for _ in range(4)]
    assert torch.equal(torch.from_dlpack(h), expected) and len(reuse) == 4


@pytest.mark.parametrize("path", PATHS)
def test_negative_bit_is_refused_not_imported_unnegated(path):
    z = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    imag = z.conj().imag
    assert imag.is_neg() and imag.tolist() == [-2.0, 4.0]
    with pytest.raises(BufferError, match="negative bit.*resolve_neg"):
        PATHS[path](imag)
    assert np.from_dlpack(ferry.from_dlpack(imag.resolve_neg())).tolist() == [-2.0, 4.0]


@pytest.mark.parametrize(
    "case, message",
    [
        (lambda: torch.ones(3, requires_grad=True), "require gradient"),
        (lambda: torch.ones(3, dtype=torch.complex64).conj(), "conjugate bit"),
        (lambda: torch.ones(3).to_sparse(), "layout"),
    ],
    ids=["requires_grad", "conjugate_bit", "sparse"],
)
def test_what_dunder_dlpack_refuses_the_table_path_refuses_too(case, message, dunder_dlpack_calls):
    # The table itself would export these (the first two with wrong semantics): ferry asks
    # `__dlpack__` instead, which raises PyTorch's own error.
    with pytest.raises(BufferError, match=message):
        ferry.from_dlpack(case())
    assert len(dunder_dlpack_calls) == 1


def test_plain_tensors_go_through_the_table(dunder_dlpack_calls):
    t = torch.arange(12.0).reshape(3, 4).T
    h = ferry.from_dlpack(t)
    assert dunder_dlpack_calls == []
    assert h.data_ptr == t.data_ptr() and h.strides == t.stride() and h.copies == 0
    assert torch.equal(torch.from_dlpack(h), t)


class Tagged(torch.Tensor):
    """A subclass with the default `__torch_function__`."""


def test_subclasses_and_copy_requests_go_through_dunder_dlpack(dunder_dlpack_calls):
    t = torch.arange(6.0)
    ferry.from_dlpack(t.as_subclass(Tagged))
    ferry.from_dlpack(t, copy=False)
    ferry.from_dlpack(t, copy=True)
    assert dunder_dlpack_calls == [Tagged, torch.Tensor, torch.Tensor]


def test_a_torch_function_mode_sees_the_export():
    seen = []

    class Watch(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    t = torch.arange(6.0)
    with Watch():
        h = ferry.from_dlpack(t)
    # With a mode active the table is not used: the mode sees `__dlpack__`, as with NumPy.
    assert "__dlpack__" in seen
    assert torch.equal(torch.from_dlpack(h), torch.arange(6.0))


class LyingStorage(torch.Tensor):
    """A subclass whose `untyped_storage()` answers with storage that is not the tensor's."""

    def untyped_storage(self):
        return torch.zeros(4).untyped_storage()


def test_a_storage_that_does_not_hold_the_memory_is_refused():
    t = torch.arange(1024.0).as_subclass(LyingStorage)
    with pytest.raises(BufferError, match="untyped_storage.*does not hold"):
        ferry.from_dlpack(t)


@pytest.mark.parametrize("path", PATHS)
def test_both_paths_import_the_same_views(path):
    base = torch.arange(4 * 5 * 6, dtype=torch.float64).reshape(4, 5, 6)
    for view in [base, base.permute(2, 0, 1), base[1:, 2:4, 1:], base[1, 2, 3], base[:, :0]]:
        h = PATHS[path](view)
        assert h.shape == tuple(view.shape) and h.strides == view.stride()
        assert h.tobytes() == torch_bytes(view.clone())
        if view.numel():
            assert h.data_ptr == view.data_ptr()


def test_without_the_table_the_import_is_as_safe():
    # A fresh interpreter that never imports tvm-ffi: PyTorch 2.9 has no table there.
    script = textwrap.dedent("""
        import gc, torch, ferry
        assert not hasattr(torch.Tensor, "__dlpack_c_exchange_api__")
        calls = []
        original = torch.Tensor.__dlpack__
        torch.Tensor.__dlpack__ = lambda self, **kw: calls.append(1) or original(self, **kw)
        t = torch.arange(1 << 20, dtype=torch.float32)
        h = ferry.from_dlpack(t)
        assert calls == [1] and not t.untyped_storage().resizable()
        t.set_(torch.zeros(3))
        gc.collect()
        reuse = [torch.full((1 << 20,), 7.0) for _ in range(4)]
        assert torch.equal(torch.from_dlpack(h), torch.arange(1 << 20, dtype=torch.float32))
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


class SwapsStorageBeforeExport(torch.Tensor):
    """A subclass whose `__dlpack__` swaps its storage, then exports: what another thread, or a
    finaliser, could do while PyTorch's (Python) `__dlpack__` runs."""

    def __dlpack__(self, **kwargs):
        self.set_(torch.arange(2048.0))
        return super().__dlpack__(**kwargs)


class SwapsStorageAfterExport(torch.Tensor):
    """A subclass whose `__dlpack__` exports, then swaps its storage, which frees the exported
    memory unless something besides the tensor holds it."""

    def __dlpack__(self, **kwargs):
        capsule = super().__dlpack__(**kwargs)
        self.set_(torch.arange(2048.0))
        return capsule


def test_a_storage_swapped_before_the_export_is_refused():
    # ferry holds the storage it took before the export; the export is of another one, which
    # nothing would keep alive past the next swap.
    t = torch.arange(1024.0).as_subclass(SwapsStorageBeforeExport)
    with pytest.raises(BufferError, match="does not hold"):
        ferry.from_dlpack(t)


def test_a_storage_swapped_after_the_export_stays_alive():
    t = torch_made(torch.float32).as_subclass(SwapsStorageAfterExport)
    expected = torch.Tensor(t).clone()
    h = ferry.from_dlpack(t)
    gc.collect()
    reuse = [torch.full((1 << 20,), 7.0) for _ in range(4)]
    # PyTorch's export points its shape at the tensor's own sizes, so the swap shows in the
    # shape ferry reads (2048); the data is the exported storage's, which ferry holds.
    assert h.shape == (2048,) and len(reuse) == 4
    assert torch.equal(torch.from_dlpack(h), expected[:2048])


def test_a_copy_is_made_from_the_held_storage():
    t = torch_made(torch.float32, 4096)
    h = ferry.from_dlpack(t, copy=True)
    assert h.copies == 1 and h.data_ptr != t.data_ptr()
    assert torch.equal(torch.from_dlpack(h), t)
    # The storage was held and made non-resizable for the copy's duration, and stays so.
    assert not t.untyped_storage().resizable()
