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

// candle-core 0.11 builds cudarc with `dynamic-linking` (libcuda, nvrtc, cublas at link time),
// while burn's CubeCL asks for `fallback-dynamic-loading` plus NCCL: one cudarc cannot serve
// both, and the failure otherwise shows up as a wall of cudarc link errors.
#[cfg(all(feature = "candle", feature = "burn", feature = "cuda"))]
compile_error!(
    "ferry: features `candle` + `burn` + `cuda` cannot be built together: candle-core 0.11 and burn 0.22 \
     enable incompatible cudarc linking modes. Enable `cuda` with one of them (features = [\"candle\", \"cuda\"] \
     or [\"burn\", \"cuda\"], default-features = false) and exchange tensors with the other over DLPack."
);

pub use ferry_core::*;

mod backend;

/// NumPy's `.npy`/`.npz` files (feature `npy`; the `ferry-io` crate).
#[cfg(feature = "npy")]
pub use ferry_io::npy;
/// safetensors files (feature `safetensors`; the `ferry-io` crate).
#[cfg(feature = "safetensors")]
pub use ferry_io::safetensors;
/// Scatter plots, histograms and heatmaps (feature `plot`; the `ferry-plot` crate).
#[cfg(feature = "plot")]
pub use ferry_plot as plot;

/// Apache Arrow: tensor columns, Arrow IPC and Parquet files, partitioned datasets (feature
/// `arrow`; the `ferry-arrow` crate).
#[cfg(feature = "arrow")]
pub use ferry_arrow as arrow;
/// The Python hand-off (feature `python`; the `ferry-python` crate).
#[cfg(feature = "python")]
pub use ferry_python as python;
/// Re-exported so embedding code uses the same pyo3 as [`python`].
#[cfg(feature = "python")]
pub use ferry_python::pyo3;
/// Cross-backend tests: `compare`, `Tolerance`, `Golden` files (feature `testing`; the
/// `ferry-testing` crate).
#[cfg(feature = "testing")]
pub use ferry_testing as testing;
#[cfg(feature = "testing")]
pub use ferry_testing::{assert_close, assert_equal, backend_tests};

pub use backend::{ToHost, convert, to_host};
#[cfg(feature = "burn")]
pub use ferry_burn::Burn;
#[cfg(feature = "candle")]
pub use ferry_candle::Candle;
#[cfg(feature = "tch")]
pub use ferry_tch::Tch;

/// The Burn adapter's own functions (batched reads, the kind trait).
#[cfg(feature = "burn")]
pub use ferry_burn as burn_adapter;
/// The Candle adapter's own functions.
#[cfg(feature = "candle")]
pub use ferry_candle as candle_adapter;
/// The tch adapter's own functions.
#[cfg(feature = "tch")]
pub use ferry_tch as tch_adapter;

/// The names most programs need.
pub mod prelude {
    pub use crate::{Backend, ToHost, convert, to_host};
    pub use ferry_core::{
        Access, CopyPolicy, DType, DlpackTensor, Element, Error, HostArray, MemoryKind,
    };
}
