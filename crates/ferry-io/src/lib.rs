//! `ferry-io`: files for ferry's host arrays — NumPy's `.npy`/`.npz` (module `npy`, feature
//! `npy`) and safetensors (module `safetensors`, feature `safetensors`), read into fresh aligned
//! buffers, memory-mapped read-only, or written. The only ferry crate that knows a file format;
//! its errors are `ferry_core::Error`'s `InvalidFile` (what the file holds is wrong) and `Io`
//! (the operating system refused).

#[cfg(feature = "npy")]
pub mod npy;
#[cfg(feature = "safetensors")]
pub mod safetensors;
#[cfg(any(feature = "npy", feature = "safetensors"))]
mod stored;
