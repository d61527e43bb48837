//! Fixtures shared by the `it` test binary: layouts over real buffers, a plain-indexing reference,
//! and a counting DLPack producer whose deleter calls are observable.

pub mod fixtures;
pub mod producer;
