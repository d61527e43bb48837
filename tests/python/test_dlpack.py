"""DLPack both ways between ferry and the real NumPy and PyTorch: every dtype × layout, zero-copy
checks, read-only, the capsule protocol, copy/device/stream arguments, and deleters."""

import ctypes
import gc
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest
import torch

import ferry
from conftest import (
    NUMPY_DTYPES, NUMPY_LAYOUTS, TORCH_DTYPES, TORCH_LAYOUTS, capsule_name, element_strides,
    numpy_case, numpy_ptr, torch_bytes, torch_case,
)


@pytest.mark.parametrize("layout", NUMPY_LAYOUTS)
@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_numpy_to_ferry_and_back(dtype, layout, no_leaks):
    base, x = numpy_case(dtype, layout)
    h = ferry.from_dlpack(x)
    assert h.shape == x.shape and h.dtype == x.dtype.name and h.ndim == x.ndim
    assert h.copies == 0
    assert h.readonly == (not x.flags.writeable)
    assert h.tobytes() == x.tobytes()
    if x.size:
        assert h.strides == element_strides(x)
        assert h.data_ptr == numpy_ptr(x)
    # And back out to NumPy: the same memory, shape, strides and bits.
    y = np.from_dlpack(h)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert y.tobytes() == x.tobytes()
    assert y.flags.writeable == x.flags.writeable
    if x.size:
        assert y.strides == x.strides
        assert numpy_ptr(y) == numpy_ptr(x)


def test_torch_of_an_array_something_else_reads_is_a_copy():
    # Re-audit of round 3: PyTorch ignores DLPack's READ_ONLY flag, and `.torch()` shared
    # an array a NumPy consumer still read: a write through the tensor changed the reader.
    h = ferry.from_dlpack(np.arange(4.0)).copy()
    reader = np.from_dlpack(h)
    t = h.torch()
    assert t.data_ptr() != h.data_ptr
    t[0] = 42.0
    assert reader[0] == 0.0
    del reader, t
    gc.collect()
    # Held by nothing else again, the array is shared.
    assert h.torch().data_ptr() == h.data_ptr


@pytest.mark.parametrize("layout", NUMPY_LAYOUTS)
@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_ferry_to_torch(dtype, layout, no_leaks):
    base, x = numpy_case(dtype, layout)
    h = ferry.from_dlpack(x.copy() if not x.flags.writeable else x)
    if layout == "negative_stride":
        # PyTorch tensors cannot have negative strides: .torch() shares a row-major copy.
        t = h.torch()
        assert t.data_ptr() != h.data_ptr
    else:
        t = torch.from_dlpack(h)
        if x.size:
            assert t.data_ptr() == h.data_ptr
            assert t.stride() == h.strides
    assert tuple(t.shape) == h.shape
    assert torch_bytes(t) == h.tobytes()


@pytest.mark.parametrize("layout", TORCH_LAYOUTS)
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_to_ferry_and_back(dtype, layout, no_leaks):
    base, t = torch_case(dtype, layout)
    # A PyTorch tensor's import is a copy (PyTorch's export keeps the tensor, not its memory),
    # row-major, in ferry's memory, which PyTorch then shares.
    h = ferry.from_dlpack(t)
    assert h.shape == tuple(t.shape) and h.dtype == dtype
    assert h.copies == 1 and not h.readonly
    assert h.tobytes() == torch_bytes(t)
    u = torch.from_dlpack(h)
    assert u.dtype == t.dtype and u.shape == t.shape
    assert torch_bytes(u) == torch_bytes(t)
    if t.numel():
        assert u.data_ptr() == h.data_ptr != t.data_ptr()


@pytest.mark.parametrize("layout", TORCH_LAYOUTS)
@pytest.mark.parametrize("dtype", [d for d in NUMPY_DTYPES if not d.startswith("uint") or d == "uint8"])
def test_torch_to_ferry_to_numpy(dtype, layout, no_leaks):
    base, t = torch_case(dtype, layout)
    h = ferry.from_dlpack(t)
    y = np.from_dlpack(h)
    assert y.tobytes() == torch_bytes(t)
    if t.numel():
        assert numpy_ptr(y) == h.data_ptr != t.data_ptr()


def test_bf16_reaches_torch_but_numpy_refuses_it_cleanly(no_leaks):
    t = torch.linspace(-3, 3, 12, dtype=torch.bfloat16).reshape(3, 4).T
    h = ferry.from_dlpack(t)
    assert h.dtype == "bfloat16"
    assert torch.equal(torch.from_dlpack(h), t)
    with pytest.raises((BufferError, TypeError, RuntimeError)):
        np.from_dlpack(h)


def test_ferry_owned_memory_is_shared(no_leaks):
    x = np.arange(24, dtype=np.float32).reshape(4, 6).T
    # copy=True: NumPy is asked to share and ferry makes the one copy (logged): row-major, in
    # ferry's memory.
    h = ferry.from_dlpack(x, copy=True)
    assert h.data_ptr != numpy_ptr(x) and h.copies == 1 and h.strides == (4, 1)
    y, t = np.from_dlpack(h), torch.from_dlpack(h)
    assert numpy_ptr(y) == h.data_ptr == t.data_ptr()
    y[0, 0] = 42
    assert t[0, 0] == 42


def test_only_an_array_held_alone_is_exported_writable(no_leaks):
    # Final audit of round 3: an export the consumer may write goes out only while nothing else
    # holds the array's memory; the export then holds it, so a second export (or a framework
    # tensor made from it) gets it READ_ONLY, and no two consumers are handed writes at once.
    h = ferry.from_dlpack(np.arange(6.0), copy=True)
    first = np.from_dlpack(h)
    assert first.flags.writeable
    second = np.from_dlpack(h)
    assert not second.flags.writeable and numpy_ptr(second) == numpy_ptr(first)
    first[0] = 7.0
    assert second[0] == 7.0
    del first, second
    assert np.from_dlpack(h).flags.writeable


def test_read_only_numpy_imports_read_only(no_leaks):
    x = np.arange(6.0)
    x.flags.writeable = False
    h = ferry.from_dlpack(x)
    assert h.readonly
    y = np.from_dlpack(h)
    assert not y.flags.writeable and numpy_ptr(y) == numpy_ptr(x)
    with pytest.raises(ValueError):
        y[0] = 1
    # A legacy capsule cannot carry READ_ONLY: copy=False is refused, copy=None copies.
    with pytest.raises(BufferError):
        h.__dlpack__(copy=False)
    legacy = ferry.from_dlpack(h.__dlpack__())
    assert not legacy.readonly and legacy.data_ptr != h.data_ptr
    assert legacy.tobytes() == x.tobytes()


def test_capsule_names_and_consumption(no_leaks):
    h = ferry.from_dlpack(np.arange(5, dtype=np.int32))
    assert capsule_name(h.__dlpack__(max_version=(0, 8))) == "dltensor"
    # The legacy capsule first: it shares only while nothing else holds the array (it cannot
    # say READ_ONLY); the versioned one made after it is READ_ONLY over the same memory.
    legacy = h.__dlpack__()
    versioned = h.__dlpack__(max_version=(1, 3))
    assert capsule_name(versioned) == "dltensor_versioned"
    assert capsule_name(legacy) == "dltensor"
    a, b = ferry.from_dlpack(versioned), ferry.from_dlpack(legacy)
    assert capsule_name(versioned) == "used_dltensor_versioned"
    assert capsule_name(legacy) == "used_dltensor"
    assert a.data_ptr == b.data_ptr == h.data_ptr
    # A used capsule cannot be imported twice.
    with pytest.raises(TypeError):
        ferry.from_dlpack(versioned)
    # While those imports hold the memory, a legacy capsule is a copy.
    assert ferry.from_dlpack(h.__dlpack__()).data_ptr != h.data_ptr
    del a, b
    # PyTorch consumes ferry's legacy capsules the same way.
    c = h.__dlpack__()
    t = torch.utils.dlpack.from_dlpack(c)
    assert capsule_name(c) == "used_dltensor" and t.data_ptr() == h.data_ptr


def test_copy_true_never_aliases_even_for_ferrys_own_exports(no_leaks):
    h = ferry.from_dlpack(np.arange(6.0)).copy()  # memory ferry copied and owns
    for capsule in (h.__dlpack__(max_version=(1, 3)), h.__dlpack__()):
        again = ferry.from_dlpack(capsule, copy=True)
        assert again.data_ptr != h.data_ptr and again.tobytes() == h.tobytes()
    shared = ferry.from_dlpack(h.__dlpack__(max_version=(1, 3)), copy=False)
    assert shared.data_ptr == h.data_ptr


def test_capsule_destroyed_while_an_exception_propagates(no_leaks):
    h = ferry.from_dlpack(np.arange(4.0))

    def fail_holding_a_capsule():
        capsule = h.__dlpack__(max_version=(1, 0))  # noqa: F841 (freed during unwinding)
        raise KeyError("kept intact")

    with pytest.raises(KeyError, match="kept intact"):
        fail_holding_a_capsule()


def test_unconsumed_capsules_are_freed():
    h = ferry.from_dlpack(np.arange(3.0))
    gc.collect()
    before = ferry.live_exports()
    capsules = [h.__dlpack__(max_version=(1, 0)) for _ in range(10)] + [h.__dlpack__()]
    assert ferry.live_exports() == before + 11
    del capsules
    gc.collect()
    assert ferry.live_exports() == before


def test_legacy_producers_and_consumers(no_leaks):
    class LegacyProducer:
        """A pre-1.0 producer: no keyword arguments, legacy capsules only."""

        def __init__(self, x):
            self.x = x

        def __dlpack__(self, stream=None):
            return self.x.__dlpack__()

        def __dlpack_device__(self):
            return self.x.__dlpack_device__()

    x = np.arange(12, dtype=np.int16).reshape(3, 4)[:, 1:]
    h = ferry.from_dlpack(LegacyProducer(x))  # max_version raises TypeError, then legacy
    assert h.data_ptr == numpy_ptr(x) and h.tobytes() == x.tobytes()
    y = np.from_dlpack(LegacyProducer(h))  # NumPy falls back the same way
    assert numpy_ptr(y) == numpy_ptr(x) and y.strides == x.strides


def test_import_asks_once_and_falls_back_step_by_step(no_leaks):
    calls = []

    class Producer:
        """Records every `__dlpack__` call; refuses the keywords it does not know."""

        def __init__(self, x, known, device=(1, 0)):
            self.x, self.known, self.device = x, known, device

        def __dlpack__(self, **kwargs):
            calls.append(sorted(kwargs))
            if set(kwargs) - self.known:
                raise TypeError(f"unexpected keywords {sorted(set(kwargs) - self.known)}")
            return self.x.__dlpack__(**{k: v for k, v in kwargs.items() if k != "dl_device"})

        def __dlpack_device__(self):
            calls.append("__dlpack_device__")
            return self.device

    x = np.arange(6, dtype=np.float32)
    every = ["copy", "dl_device", "max_version"]
    # A host array: one call with every keyword (as NumPy asks), and no __dlpack_device__ call.
    assert ferry.from_dlpack(Producer(x, set(every))).data_ptr == numpy_ptr(x)
    assert calls == [every]
    # A producer without dl_device is asked again with the keywords that have a value. copy=True:
    # the host array is shared by the producer and copied by ferry; copy=False is passed on.
    calls.clear()
    h = ferry.from_dlpack(Producer(x, {"max_version", "copy"}), copy=True)
    assert h.data_ptr != numpy_ptr(x) and h.tobytes() == x.tobytes()
    assert ferry.from_dlpack(Producer(x, {"max_version", "copy"}), copy=False).data_ptr == numpy_ptr(x)
    assert calls == [every, ["max_version"], every, ["copy", "max_version"]]
    # A legacy producer of device memory: refused with what to do, after asking its device.
    calls.clear()
    with pytest.raises(BufferError, match="legacy DLPack.*t.cpu()"):
        ferry.from_dlpack(Producer(x, set(), device=(2, 0)))
    assert calls == [every, ["max_version"], "__dlpack_device__"]
    with pytest.raises(TypeError, match="type list has no __dlpack__ method"):
        ferry.from_dlpack([1, 2, 3])


def test_a_device_array_is_released_and_asked_for_again_on_the_host(no_leaks):
    from test_exchange import DELETER, DLDataType, DLDevice, DLManagedTensorVersioned
    from test_exchange import DLPackVersion, DLTensor, K_DL_CUDA, _new_capsule

    calls, released = [], []
    shape = (ctypes.c_int64 * 1)(6)
    deleter = DELETER(lambda managed: released.append(managed))
    on_host = np.arange(6, dtype=np.float32)

    class DeviceProducer:
        """A DLPack 1.x producer of CUDA memory (metadata only: nobody reads it) that copies to
        the host when asked with dl_device, or refuses dl_device when it does not know it."""

        def __init__(self, knows_dl_device):
            self.knows_dl_device = knows_dl_device

        def __dlpack__(self, **kwargs):
            calls.append(sorted(kwargs))
            if "dl_device" in kwargs and not self.knows_dl_device:
                raise TypeError("unexpected keyword dl_device")
            if kwargs.get("dl_device") is not None:
                assert kwargs["dl_device"] == (1, 0)
                return on_host.__dlpack__(max_version=kwargs["max_version"])
            managed = DLManagedTensorVersioned(
                version=DLPackVersion(1, 3),
                deleter=deleter,
                dl_tensor=DLTensor(
                    data=0x7F0000000000, device=DLDevice(K_DL_CUDA, 0), ndim=1,
                    dtype=DLDataType(2, 32, 1), shape=shape, strides=None,
                ),
            )
            self.managed = managed  # alive until the deleter has run
            return _new_capsule(ctypes.addressof(managed), b"dltensor_versioned", None)

    h = ferry.from_dlpack(DeviceProducer(True), copy=True)
    assert h.tobytes() == on_host.tobytes() and h.data_ptr != numpy_ptr(on_host)
    # Asked as it is (copy=True withheld: no copy on the device), released exactly once, then
    # asked for a host copy with copy passed on.
    every = ["copy", "dl_device", "max_version"]
    assert calls == [every, every]
    assert len(released) == 1
    calls.clear()
    with pytest.raises(BufferError, match=r"lives on cuda:0.*does not take dl_device.*t\.cpu\(\)"):
        ferry.from_dlpack(DeviceProducer(False))
    # Refusing dl_device=None, it is asked with max_version alone, then for the host copy.
    assert calls == [every, ["max_version"], ["dl_device", "max_version"]]
    assert len(released) == 2


@pytest.mark.parametrize("device_type", [3, 13])  # kDLCUDAHost (pinned), kDLCUDAManaged
def test_pinned_and_managed_memory_is_exported_as_cpu_memory(device_type, no_leaks):
    """What a CUDA `to_host` returns is pinned memory: the CPU reads it where it is, and
    `torch.from_dlpack` refuses kDLCUDAHost ("Unsupported device_type: 3"), so ferry exports it
    as kDLCPU (PyTorch labels its own pinned tensors so). Made with host memory labelled pinned
    by a ctypes producer."""
    from test_exchange import DELETER, DLDataType, DLDevice, DLManagedTensorVersioned
    from test_exchange import DLPackVersion, DLTensor, _new_capsule

    released = []
    backing = np.arange(6, dtype=np.float32)
    shape = (ctypes.c_int64 * 1)(6)
    deleter = DELETER(lambda managed: released.append(managed))

    class PinnedProducer:
        def __dlpack__(self, **kwargs):
            self.managed = DLManagedTensorVersioned(
                version=DLPackVersion(1, 3),
                deleter=deleter,
                dl_tensor=DLTensor(
                    data=numpy_ptr(backing), device=DLDevice(device_type, 0), ndim=1,
                    dtype=DLDataType(2, 32, 1), shape=shape, strides=None,
                ),
            )
            return _new_capsule(ctypes.addressof(self.managed), b"dltensor_versioned", None)

    producer = PinnedProducer()  # holds the managed struct until its deleter has run
    h = ferry.from_dlpack(producer)
    assert h.data_ptr == numpy_ptr(backing) and h.copies == 0
    assert h.__dlpack_device__() == (1, 0)
    t = torch.from_dlpack(h)
    assert t.device.type == "cpu" and t.data_ptr() == numpy_ptr(backing)
    assert numpy_ptr(np.from_dlpack(h)) == numpy_ptr(backing)
    import tvm_ffi  # the C exchange API labels it the same way

    assert str(tvm_ffi.from_dlpack(h).device) == "cpu:0"
    # Its own label on request; any other device is refused.
    own = ferry.from_dlpack(h.__dlpack__(max_version=(1, 3), dl_device=(device_type, 0)))
    assert own.data_ptr == numpy_ptr(backing)
    with pytest.raises(BufferError):
        h.__dlpack__(max_version=(1, 3), dl_device=(2, 0))
    del t, own, h
    gc.collect()
    assert len(released) == 1


def test_copy_device_and_stream_arguments(no_leaks):
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    h = ferry.from_dlpack(x)
    assert h.__dlpack_device__() == (1, 0)
    copied = np.from_dlpack(h, copy=True)
    assert numpy_ptr(copied) != numpy_ptr(x) and np.array_equal(copied, x)
    shared = np.from_dlpack(h, copy=False)
    assert numpy_ptr(shared) == numpy_ptr(x)
    assert numpy_ptr(np.from_dlpack(h, device="cpu")) == numpy_ptr(x)
    with pytest.raises(BufferError):
        h.__dlpack__(max_version=(1, 0), dl_device=(2, 0))
    with pytest.raises(ValueError):
        h.__dlpack__(max_version=(1, 0), stream=7)
    with pytest.raises(ValueError):  # not TypeError, which means "old producer" to consumers
        h.__dlpack__(max_version=(1, 0), stream="default")
    h.__dlpack__(max_version=(1, 0), stream=-1)
    assert ferry.from_dlpack(x, copy=False).data_ptr == numpy_ptr(x)
    assert ferry.from_dlpack(x, copy=True).data_ptr != numpy_ptr(x)


def test_dlpack_method_takes_the_protocol_keywords_however_they_are_spelled(no_leaks):
    """`HostArray.__dlpack__` is a C method parsing its keywords by hand: names given as
    literals, through a dict, or built at run time (not interned) all reach it; anything else is
    the TypeError a consumer reads as "old producer"."""
    import inspect

    h = ferry.from_dlpack(np.arange(6.0).reshape(2, 3))
    assert str(inspect.signature(ferry.HostArray.__dlpack__)) == (
        "(self, /, *, stream=None, max_version=None, dl_device=None, copy=None)")
    built = "".join(["max_", "version"])  # a fresh str, not the interned one
    for kwargs in ({"max_version": (1, 3)}, {built: (1, 3)}, {built: (1, 0), "copy": None,
                                                               "dl_device": None, "stream": None}):
        assert capsule_name(h.__dlpack__(**kwargs)) == "dltensor_versioned"
    assert capsule_name(h.__dlpack__(max_version=None)) == "dltensor"
    assert capsule_name(h.__dlpack__(max_version=(0, 8))) == "dltensor"
    assert np.array_equal(np.from_dlpack(h), np.arange(6.0).reshape(2, 3))
    for bad in ({"max_version": 1}, {"max_version": (1,)}, {"max_version": (-1, 0)},
                {"max_version": ("1", 0)}, {"max_version": [1, 0]}, {"copy": 1},
                {"dl_device": "cpu"}, {"versions": (1, 3)}):
        with pytest.raises(TypeError):
            h.__dlpack__(**bad)
    with pytest.raises(TypeError, match="keyword"):
        h.__dlpack__((1, 3))
    with pytest.raises(TypeError):
        ferry.HostArray.__dlpack__(np.arange(3.0), max_version=(1, 3))


def test_host_array_objects_are_plain_and_only_ferry_makes_them(no_leaks):
    """`ferry.HostArray` is a type built by hand (like NumPy's ndarray): instances are not
    tracked by the garbage collector, and Python can neither create one, subclass the type, nor
    turn another object into one (or one into another type) by assigning `__class__` — each
    would reach an object whose payload ferry never wrote."""
    h = ferry.from_dlpack(np.arange(6.0).reshape(2, 3))
    assert type(h) is ferry.HostArray and type(h).__module__ == "ferry"
    assert type(h).__qualname__ == "HostArray" and not gc.is_tracked(h)
    with pytest.raises(TypeError, match="cannot create"):
        ferry.HostArray()
    with pytest.raises(TypeError, match="not safe"):
        object.__new__(ferry.HostArray)
    with pytest.raises(TypeError, match="not an acceptable base type"):
        type("Sub", (ferry.HostArray,), {})
    # Round 3, hole 6: on 5d4584c the type was mutable, and a `__new__` set on it made an
    # instance whose payload ferry never wrote (`del` then crashed). It is immutable now.
    with pytest.raises(TypeError, match="immutable"):
        ferry.HostArray.__new__ = staticmethod(lambda cls: object.__new__(cls))
    with pytest.raises(TypeError, match="cannot create"):
        ferry.HostArray()
    for name in ("__dlpack__", "__dlpack_c_exchange_api__", "tobytes", "__del__", "__repr__"):
        with pytest.raises(TypeError, match="immutable"):
            setattr(ferry.HostArray, name, None)
    with pytest.raises(TypeError, match="immutable"):
        del ferry.HostArray.__dlpack_c_exchange_api__
    assert type(ferry.HostArray.__dlpack_c_exchange_api__).__name__ == "PyCapsule"
    for n in range(64):  # slotted classes of every size up to and past the payload's
        slotted = type("Slotted", (), {"__slots__": tuple(f"s{i}" for i in range(n))})
        with pytest.raises(TypeError):
            h.__class__ = slotted
        with pytest.raises(TypeError):
            slotted().__class__ = ferry.HostArray
    for name in ("shape", "strides", "dtype", "ndim", "size", "nbytes", "readonly", "data_ptr",
                 "copies"):
        with pytest.raises(AttributeError, match="not writable"):
            setattr(h, name, 1)
    with pytest.raises(TypeError, match="doesn't apply"):
        ferry.HostArray.tobytes(np.arange(3))
    assert len(h) == 2 and h.ndim == 2 and h.size == 6 and h.nbytes == 48
    with pytest.raises(TypeError, match="0-d"):
        len(ferry.from_dlpack(np.array(1.0)))


def test_astype_takes_its_dtype_by_position_or_keyword(no_leaks):
    h = ferry.from_dlpack(np.arange(6.0))
    assert h.astype("int32").dtype == "int32" and h.astype(dtype="float32").dtype == "float32"
    assert np.array_equal(np.from_dlpack(h.astype("int64")), np.arange(6))
    with pytest.raises(TypeError, match="missing"):
        h.astype()
    with pytest.raises(TypeError, match="at most one"):
        h.astype("int32", "int64")
    with pytest.raises(TypeError, match="multiple values"):
        h.astype("int32", dtype="int64")
    with pytest.raises(TypeError, match="unexpected keyword"):
        h.astype(type="int32")
    with pytest.raises(TypeError, match="must be a str"):
        h.astype(np.float32)
    with pytest.raises(TypeError, match="unknown dtype"):
        h.astype("float128")


def test_an_exception_survives_host_arrays_dropped_while_it_propagates(no_leaks):
    """A HostArray released while an exception is being raised (its frame unwinding) runs the
    producer's deleter without losing or replacing that exception."""
    def fails():
        arrays = [ferry.from_dlpack(torch.arange(4)), ferry.from_dlpack(np.arange(4))]
        raise KeyError(len(arrays))

    for _ in range(100):
        with pytest.raises(KeyError, match="2"):
            fails()


def test_non_dlpack_objects_are_type_errors():
    with pytest.raises(TypeError, match="__dlpack__"):
        ferry.from_dlpack([1, 2, 3])
    with pytest.raises(TypeError):
        ferry.from_dlpack(np.arange(3)).astype("float128")


def test_producers_are_released_exactly_when_the_last_view_goes(no_leaks):
    # Weak references to what owns the memory: a NumPy array, and a PyTorch tensor (whose
    # Python object PyTorch keeps alive while a C++ reference to it does, as the export's).
    x = np.arange(1000, dtype=np.float32)
    t = torch.arange(50, dtype=torch.float64).reshape(5, 10).T
    xr, tr = weakref.ref(x), weakref.ref(t)
    x = x.reshape(10, 100)
    h_np, h_t = ferry.from_dlpack(x[:, ::3]), ferry.from_dlpack(t)
    views = [np.from_dlpack(h_np), torch.from_dlpack(h_np), np.from_dlpack(h_t),
             torch.from_dlpack(h_t), ferry.from_dlpack(torch.from_dlpack(h_np))]
    del x, t
    gc.collect()
    # A PyTorch tensor's import is a copy: the tensor is released at once.
    assert xr() is not None and tr() is None
    del h_np, h_t
    gc.collect()
    assert xr() is not None  # the consumers' views still hold it
    views[0][0, 0] = 7.0
    assert views[1][0, 0].item() == 7.0
    # PyTorch's view of ferry's array, imported again: a copy made before the write.
    assert views[4].copies == 1 and views[4].tobytes()[:4] == np.float32(0).tobytes()
    del views
    gc.collect()
    assert xr() is None


def test_exports_dropped_on_other_threads(no_leaks):
    x = np.arange(64.0)
    h = ferry.from_dlpack(x)
    held = [torch.from_dlpack(h) for _ in range(32)] + [np.from_dlpack(h) for _ in range(32)]

    def drop(chunk):
        chunk.clear()

    chunks = [held[i::4] for i in range(4)]
    del held
    threads = [threading.Thread(target=drop, args=(c,)) for c in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_interpreter_shutdown_with_live_exports_and_imports():
    script = """
import gc, threading, numpy as np, torch, ferry
x = np.arange(100.0)
h = ferry.from_dlpack(x)
KEEP = [np.from_dlpack(h), torch.from_dlpack(h), h.__dlpack__(max_version=(1, 0)), h.__dlpack__(),
        ferry.from_dlpack(torch.arange(10)), ferry.from_dlpack(np.from_dlpack(h))]
cycle = {"h": ferry.from_dlpack(x[::2])}
cycle["self"] = cycle
gc.disable()
t = threading.Thread(target=lambda: KEEP.append(torch.from_dlpack(h)), daemon=True)
t.start(); t.join()
print("exiting with", ferry.live_exports(), "live exports")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "exiting with 6 live exports" in out.stdout
    assert "Fatal" not in out.stderr and "Error" not in out.stderr
