//! The one integration test binary: the core conformance suite (layouts × dtypes, DLPack both
//! ways, hostile input, deleters, properties) and, per enabled backend, the backend suite.

#[cfg(feature = "arrow")]
mod arrow;
mod backends;
#[cfg(feature = "burn")]
mod burn;
#[cfg(feature = "candle")]
mod candle;
mod core_layouts;
// The GPU checks of candle and Burn (tch's CUDA path has no test binary of its own: README).
#[cfg(all(feature = "cuda", any(feature = "candle", feature = "burn")))]
mod cuda;
mod dlpack_import;
#[cfg(feature = "files")]
mod files;
#[cfg(feature = "plot")]
mod plot;
mod properties;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_args;
#[cfg(feature = "candle")]
mod readme;
mod soundness;
mod stress;
#[cfg(feature = "tch")]
mod tch;
#[cfg(feature = "testing")]
mod testing;
