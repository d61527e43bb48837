//! Fixtures shared by the `it` test binary: layouts over real buffers, a plain-indexing reference,
//! a counting DLPack producer, and the backend-generic conformance suite with one small
//! [`backends::SuiteBackend`] implementation per framework.

pub mod backends;
pub mod fixtures;
pub mod producer;
pub mod suite;
