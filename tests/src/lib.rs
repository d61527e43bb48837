//! ferry's conformance suite as a test-support library, and the fixtures of the `it` test
//! binary: layouts over real buffers, a plain-indexing reference, a counting DLPack producer.
//!
//! A new framework adapter implements ferry's [`Backend`](ferry::Backend) for its tensors,
//! then [`backends::SuiteBackend`] (the framework's own transpose, narrow, broadcast, flip and
//! read-back, and what it can express), and calls [`suite::run_backend`] — and
//! [`suite::run_pair`] with each existing backend — from a test. The suite is written once and
//! asserts the same contract for every backend: zero-copy host views of every dtype and
//! layout, round trips, typed refusals, conversions equal to the source's own read-back.

pub mod backends;
pub mod fixtures;
pub mod producer;
pub mod suite;
