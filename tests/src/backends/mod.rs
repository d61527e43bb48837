//! What the suite needs from a framework beyond [`ferry::Backend`]: the framework's own ops
//! (transpose, narrow, broadcast, reductions) and its own read-back, to compare ferry against.

use ferry::{Backend, HostArray, Result};

#[cfg(feature = "burn")]
mod burn;
#[cfg(feature = "candle")]
mod candle;
#[cfg(feature = "tch")]
mod tch;

/// What a framework can express, as data: a refusal is asserted, never skipped.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Negative strides (a flipped view without a copy).
    pub negative_strides: bool,
    /// The one rank the tensor type holds (`None`: any rank).
    pub fixed_rank: Option<usize>,
}

/// A framework under test: its [`Backend`] and the framework's own ops the suite compares ferry
/// against. The suite calls only these two traits, so an adapter outside this workspace can run
/// it.
pub trait SuiteBackend: Backend {
    /// What the framework can express.
    const CAPS: Capabilities;

    /// Swaps the last two axes (a view where the framework allows).
    fn transpose(t: &Self::Tensor) -> Self::Tensor;
    /// `len` entries of `axis` from `start` (a view with an offset).
    fn narrow(t: &Self::Tensor, axis: usize, start: usize, len: usize) -> Self::Tensor;
    /// Broadcasts a leading axis of length 1 to `n` (zero stride).
    fn broadcast_leading(t: &Self::Tensor, n: usize) -> Self::Tensor;
    /// Reverses `axis` with the framework's own flip: a view with a negative stride when
    /// [`Capabilities::negative_strides`], else the framework's flipped copy.
    fn flip(t: &Self::Tensor, axis: usize) -> Self::Tensor;
    /// The framework's own read of the values, in row-major order, as a host array (through
    /// its native API, not through ferry).
    fn read_back(t: &Self::Tensor) -> Result<HostArray>;
}

/// Float arithmetic computed by the framework itself, to compare frameworks on the host.
pub trait FloatOps: SuiteBackend {
    /// Sum over `axis` (f32 tensors), read back through ferry.
    fn sum_axis(t: &Self::Tensor, axis: usize) -> HostArray;
    /// Matrix product (f32 tensors), read back through ferry.
    fn matmul(a: &Self::Tensor, b: &Self::Tensor) -> HostArray;
}

#[cfg(feature = "burn")]
pub use ferry::Burn;
#[cfg(feature = "candle")]
pub use ferry::Candle;
#[cfg(feature = "tch")]
pub use ferry::Tch;

/// Burn's three kinds at rank 2, each a backend of the suite.
#[cfg(feature = "burn")]
pub type BurnFloat = ferry::Burn<2, ferry::burn_adapter::burn_kinds::Float>;
/// Burn `Int` tensors of rank 2.
#[cfg(feature = "burn")]
pub type BurnInt = ferry::Burn<2, ferry::burn_adapter::burn_kinds::Int>;
/// Burn `Bool` tensors of rank 2.
#[cfg(feature = "burn")]
pub type BurnBool = ferry::Burn<2, ferry::burn_adapter::burn_kinds::Bool>;
