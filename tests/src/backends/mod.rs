//! What the suite needs from a framework beyond [`ferry::Backend`]: the framework's own ops
//! (transpose, narrow, broadcast, reductions) and its own read-back, to compare ferry against.

use ferry::{Backend, HostArray, Result};

#[cfg(feature = "candle")]
mod candle;

/// What a framework can express, as data: a refusal is asserted, never skipped.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Negative strides (a flipped view without a copy).
    pub negative_strides: bool,
}

/// A framework under test.
pub trait SuiteBackend: Backend {
    /// What the framework can express.
    const CAPS: Capabilities;

    /// Swaps the last two axes (a view where the framework allows).
    fn transpose(t: &Self::Tensor) -> Self::Tensor;
    /// `len` entries of `axis` from `start` (a view with an offset).
    fn narrow(t: &Self::Tensor, axis: usize, start: usize, len: usize) -> Self::Tensor;
    /// Broadcasts a leading axis of length 1 to `n` (zero stride).
    fn broadcast_leading(t: &Self::Tensor, n: usize) -> Self::Tensor;
    /// Reverses `axis`, as a view when [`Capabilities::negative_strides`], else `None`.
    fn flip(t: &Self::Tensor, axis: usize) -> Option<Self::Tensor>;
    /// The framework's own read of the values, in row-major order, as a host array (through
    /// its native API, not through ferry).
    fn read_back(t: &Self::Tensor) -> Result<HostArray>;
    /// Sum over `axis`, computed by the framework (f32 tensors).
    fn sum_axis(t: &Self::Tensor, axis: usize) -> Self::Tensor;
    /// Matrix product, computed by the framework (f32 tensors).
    fn matmul(a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
}

#[cfg(feature = "candle")]
pub use ferry::Candle;
