//! `ferry`: one door from any framework's tensor to a strided host array ([`HostArray`]) and
//! on to ndarray, files, NumPy and PyTorch, over DLPack.
//!
//! Pick frameworks with cargo features (`candle` is on by default; `cuda` adds the GPU paths
//! of every enabled adapter). Analysis code is written once against [`ToHost`] or a
//! [`Backend`] marker type:
//!
//! ```
//! # #[cfg(feature = "candle")] {
//! use ferry::ToHost;
//!
//! fn summary(t: &impl ToHost) -> ferry::Result<(usize, f64)> {
//!     let host = t.to_host()?.cast::<f64>()?;
//!     let view = host.view::<f64>()?;
//!     Ok((view.len(), view.sum()))
//! }
//!
//! let t = candle_core::Tensor::new(&[[1f32, 2.], [3., 4.]], &candle_core::Device::Cpu).unwrap();
//! assert_eq!(summary(&t)?, (4, 10.0));
//! # }
//! # Ok::<(), ferry::Error>(())
//! ```
#![warn(missing_docs)]

pub use ferry_core::*;

mod backend;

#[cfg(feature = "candle")]
pub use backend::Candle;
pub use backend::{Backend, ToHost, convert, to_host};

/// The names most programs need.
pub mod prelude {
    pub use crate::{Backend, ToHost, convert, to_host};
    pub use ferry_core::{CopyPolicy, DType, DlpackTensor, Element, Error, HostArray, MemoryKind};
}
