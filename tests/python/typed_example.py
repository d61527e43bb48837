"""A small program written against ferry's type stubs; `cargo xtask python` checks it with
`mypy --strict` against the installed wheel (it is not a test module, pytest skips it)."""

import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

import ferry


def column_means(x: ferry.HostArray) -> npt.NDArray[np.float64]:
    """Means of each column, computed by NumPy over ferry's memory."""
    values: npt.NDArray[np.float64] = np.from_dlpack(x).astype(np.float64)
    means: npt.NDArray[np.float64] = values.mean(axis=0)
    return means


def round_trip(folder: Path) -> dict[str, ferry.HostArray]:
    """An array through `.npy`, then a dict of arrays through safetensors."""
    h: ferry.HostArray = ferry.from_dlpack(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert h.shape == (3, 4) and h.strides == (4, 1) and h.dtype == "float32"
    ferry.save_npy(folder / "h.npy", h)
    loaded = ferry.load_npy(str(folder / "h.npy"), mmap=True)
    ferry.save_safetensors(folder / "t.safetensors", {"h": loaded}, metadata={"by": "ferry"})
    tensors, metadata = ferry.load_safetensors(folder / "t.safetensors")
    assert metadata == {"by": "ferry"}
    return tensors


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tensors = round_trip(Path(folder))
        means = column_means(tensors["h"])
        copied: ferry.HostArray = tensors["h"].copy().astype("float64")
        print(means, copied.readonly, ferry.live_exports(), len(copied), ferry.__version__)
        capsule: object = ferry.HostArray.__dlpack_c_exchange_api__
        print(type(capsule).__name__, copied.__dlpack_device__(), copied.nbytes)
        back = ferry.from_arrow(copied)  # a HostArray speaks Arrow's PyCapsule interface too
        assert isinstance(back, ferry.HostArray) and back.shape == copied.shape
        batch: ferry.RecordBatch = ferry.record_batch({"h": copied})
        columns = ferry.from_arrow(batch, combine=True)
        assert isinstance(columns, dict) and batch.num_rows == len(copied)
        assert batch.column("h").shape == copied.shape and batch.column_names == ["h"]


if __name__ == "__main__":
    main()
