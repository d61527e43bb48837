"""Type stubs of the `ferry` extension module (maturin ships them as `ferry/__init__.pyi`,
with `py.typed`).

`ferry.HostArray` carries arrays from candle, Burn and tch (or any DLPack producer) to NumPy,
PyTorch and every other DLPack consumer without copying host memory.
"""

import os
from typing import Any, Protocol, final

import numpy.typing as npt

__version__: str

class SupportsDLPack(Protocol):
    """Anything with DLPack's Python methods: NumPy arrays, PyTorch tensors, JAX and CuPy
    arrays, `ferry.HostArray`."""

    def __dlpack__(self, /, *, stream: Any = ..., max_version: tuple[int, int] | None = ..., dl_device: tuple[int, int] | None = ..., copy: bool | None = ...) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...

_PathLike = str | os.PathLike[str]

@final
class HostArray:
    """A strided host array shared with its producer (no copy) and exported over DLPack."""

    __dlpack_c_exchange_api__: Any
    """DLPack 1.3's C exchange API table: a PyCapsule named ``"dlpack_exchange_api"``."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Length of each axis."""
    @property
    def strides(self) -> tuple[int, ...]:
        """Step of each axis in elements (NumPy's ``strides`` divided by ``itemsize``)."""
    @property
    def dtype(self) -> str:
        """NumPy's name of the dtype (``"float32"``, ``"bfloat16"``, ...)."""
    @property
    def ndim(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def readonly(self) -> bool:
        """Whether ferry refuses writes through this array (exports carry READ_ONLY)."""
    @property
    def data_ptr(self) -> int:
        """Address of element ``[0, ..., 0]``."""
    @property
    def copies(self) -> int:
        """How many copies ferry made to produce this array."""
    def __len__(self) -> int: ...
    def __dlpack__(self, /, *, stream: int | None = None, max_version: tuple[int, int] | None = None, dl_device: tuple[int, int] | None = None, copy: bool | None = None) -> Any:
        """A ``"dltensor_versioned"`` capsule (``"dltensor"`` without ``max_version``)."""
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def __arrow_c_schema__(self) -> Any:
        """The Arrow PyCapsule interface: an ``"arrow_schema"`` capsule of the column this
        array exports as (1-D: a primitive array; higher: ``arrow.fixed_shape_tensor`` whose
        rows are the first axis)."""
    def __arrow_c_array__(self, requested_schema: Any | None = None) -> tuple[Any, Any]:
        """The Arrow PyCapsule interface: ``(schema, array)`` capsules sharing this memory,
        so ``pyarrow.array(h)`` takes it without copying."""
    def tobytes(self) -> bytes:
        """The elements in row-major order."""
    def copy(self) -> HostArray:
        """A row-major copy in fresh, writable memory."""
    def astype(self, dtype: str) -> HostArray:
        """The values converted to ``dtype`` (a NumPy name)."""
    def numpy(self) -> npt.NDArray[Any]:
        """A NumPy array sharing this memory."""
    def torch(self) -> Any:
        """A ``torch.Tensor`` sharing this memory (or a row-major copy PyTorch can hold)."""

def from_dlpack(x: SupportsDLPack | HostArray | Any, /, *, copy: bool | None = None) -> HostArray:
    """Imports anything with ``__dlpack__`` (or a DLPack capsule), sharing its memory unless
    ``copy=True``. A PyTorch tensor is copied (PyTorch may free or change its memory under an
    importer: ``set_``, ``resize_``, ``share_memory_``, in-place writes), so ``copy=False``
    raises ``BufferError`` for one."""

class SupportsArrowArray(Protocol):
    """Anything with the Arrow PyCapsule interface's ``__arrow_c_array__``: pyarrow and
    nanoarrow arrays and record batches, `ferry.HostArray`, `ferry.RecordBatch`."""

    def __arrow_c_array__(self, requested_schema: Any | None = ...) -> tuple[Any, Any]: ...

class SupportsArrowStream(Protocol):
    """Anything with the Arrow PyCapsule interface's ``__arrow_c_stream__``: pyarrow
    ChunkedArrays, Tables and RecordBatchReaders, Polars Series and DataFrames, DuckDB
    results, `ferry.RecordBatch`."""

    def __arrow_c_stream__(self, requested_schema: Any | None = ...) -> Any: ...

_Imported = HostArray | list[HostArray]

def from_arrow(obj: SupportsArrowArray | SupportsArrowStream, *, combine: bool = False) -> _Imported | list[_Imported] | dict[str, Any]:
    """Imports Arrow data sharing its memory (read-only). From ``__arrow_c_array__`` (used
    where an object has both): a primitive array as a 1-D array, an
    ``arrow.fixed_shape_tensor`` array (or a bare ``FixedSizeList`` of numbers, as DuckDB and
    Polars give) as one array whose first axis is the rows, an
    ``arrow.variable_shape_tensor`` array as a list of arrays, a record batch as a dict of its
    columns so imported. From ``__arrow_c_stream__``: the same per chunk, in a list (a dict of
    lists for a table or a reader of batches); with ``combine=True`` each column's chunks
    joined into one array (a copy only for two or more chunks, counted in ``copies``). Nulls
    are refused."""

@final
class RecordBatch:
    """Named arrays as one Arrow record batch (``ferry.record_batch``), which
    ``pyarrow.table``, ``pyarrow.record_batch``, ``polars.DataFrame`` and DuckDB take without
    copying, through ``__arrow_c_stream__`` or ``__arrow_c_array__``."""

    @property
    def num_rows(self) -> int: ...
    @property
    def column_names(self) -> list[str]: ...
    def column(self, name: str) -> HostArray:
        """Column ``name`` as a read-only array over the batch's memory (no copy)."""
    def __len__(self) -> int: ...
    def __arrow_c_schema__(self) -> Any: ...
    def __arrow_c_array__(self, requested_schema: Any | None = None) -> tuple[Any, Any]: ...
    def __arrow_c_stream__(self, requested_schema: Any | None = None) -> Any: ...

def record_batch(columns: dict[str, HostArray | SupportsArrowArray | SupportsDLPack | Any]) -> RecordBatch:
    """A record batch of the named arrays, all with the same first-axis length: a 1-D array
    becomes a primitive column, a higher one an ``arrow.fixed_shape_tensor`` column whose
    first axis is the rows, sharing memory (a PyTorch tensor is copied, as ``from_dlpack``
    copies it; ferry memory lent to a writer such as ``.torch()`` is copied). Columns named
    with a NUL are refused."""

def live_exports() -> int:
    """Exports handed to DLPack consumers that are still alive."""

def load_npy(path: _PathLike, *, mmap: bool = False) -> HostArray:
    """Reads an ``.npy`` file (memory-mapped and read-only with ``mmap=True``)."""

def save_npy(path: _PathLike, array: SupportsDLPack | HostArray) -> None:
    """Writes an array to an ``.npy`` file."""

def load_npz(path: _PathLike) -> dict[str, HostArray]:
    """Reads every array of an ``.npz`` archive."""

def save_npz(path: _PathLike, arrays: dict[str, SupportsDLPack | HostArray], *, compressed: bool = False) -> None:
    """Writes arrays to an ``.npz`` archive (deflated with ``compressed=True``)."""

def load_safetensors(path: _PathLike, *, mmap: bool = True) -> tuple[dict[str, HostArray], dict[str, str]]:
    """Reads a safetensors file: its arrays and its string metadata."""

def save_safetensors(path: _PathLike, tensors: dict[str, SupportsDLPack | HostArray], metadata: dict[str, str] | None = None) -> None:
    """Writes arrays (and optional string metadata) to a safetensors file."""
