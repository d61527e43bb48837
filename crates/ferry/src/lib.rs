//! `ferry`: one door from any framework's tensor to a strided host array ([`HostArray`]) and
//! on to ndarray, files, NumPy and PyTorch, over DLPack.
//!
//! Framework adapters are chosen by cargo features; the interchange layer (`ferry-core`) is
//! always present and re-exported here.
#![warn(missing_docs)]

pub use ferry_core::*;

/// The names most programs need.
pub mod prelude {
    pub use ferry_core::{CopyPolicy, DType, DlpackTensor, Element, Error, HostArray, MemoryKind};
}
