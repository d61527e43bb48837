"""Type stubs for `ferry_example`, an example Rust extension built on ferry."""

import ferry

# Any array argument: NumPy, PyTorch, JAX (anything with __dlpack__), pyarrow (__arrow_c_array__),
# a ferry.HostArray.
_ArrayLike = ferry.SupportsDLPack | ferry.SupportsArrowArray | ferry.HostArray

def row_norms(x: _ArrayLike) -> ferry.HostArray:
    """The Euclidean norm of each row of a 2-D float32 array (NumPy, PyTorch, pyarrow, ferry)."""

def softmax(x: _ArrayLike) -> ferry.HostArray:
    """Softmax over the last axis, computed by candle."""

def center_rows(x: _ArrayLike) -> ferry.HostArray:
    """Each row of a 2-D float32 array minus its mean, computed by Burn."""

def embed_batch(x: _ArrayLike) -> dict[str, ferry.HostArray]:
    """Rows scaled to unit length ("embedding") and their norms ("norm"), ready for pyarrow."""
