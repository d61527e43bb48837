//! [`Error`]: why a comparison or a golden file could not be made (a failed comparison is not
//! an error: it is a [`Comparison`](crate::Comparison) whose `is_close()` is false).

use std::path::PathBuf;

use ferry_core::DType;

/// What went wrong, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The two arrays have different shapes (torch.testing's wording).
    #[error(
        "The values for attribute 'shape' do not match: {actual:?} != {expected:?} (actual: {actual_origin}, expected: {expected_origin}); compare arrays of one shape (reshape or broadcast one of them first)"
    )]
    ShapeMismatch {
        /// `actual`'s shape.
        actual: Vec<usize>,
        /// `expected`'s shape.
        expected: Vec<usize>,
        /// Where `actual` came from (a framework's name, "host array", a file entry).
        actual_origin: String,
        /// Where `expected` came from.
        expected_origin: String,
    },
    /// The two arrays have different dtypes and the tolerance does not allow it.
    #[error(
        "The values for attribute 'dtype' do not match: {actual} != {expected} (actual: {actual_origin}, expected: {expected_origin}); cast one of them, or compare in the wider type with Tolerance::any_dtype() (assert_close!(a, e, any_dtype))"
    )]
    DtypeMismatch {
        /// `actual`'s dtype.
        actual: DType,
        /// `expected`'s dtype.
        expected: DType,
        /// Where `actual` came from.
        actual_origin: String,
        /// Where `expected` came from.
        expected_origin: String,
    },
    /// A dtype ferry cannot compare elementwise.
    #[error("cannot compare arrays of dtype {dtype}: {why}")]
    UnsupportedDtype {
        /// The dtype.
        dtype: DType,
        /// Why, and what to do instead.
        why: &'static str,
    },
    /// A golden file has no entry of that name.
    #[error(
        "golden file {path} has no entry {name:?} (it has {available}); run the test with FERRY_BLESS=1 to write it: FERRY_BLESS=1 cargo test"
    )]
    MissingEntry {
        /// The golden file.
        path: PathBuf,
        /// The entry asked for.
        name: String,
        /// The entries it has, listed.
        available: String,
    },
    /// A golden file's entry does not match.
    #[error(
        "golden file {path}, entry {name:?}: {report}\n(if the new values are right, run FERRY_BLESS=1 cargo test to update the file)"
    )]
    GoldenMismatch {
        /// The golden file.
        path: PathBuf,
        /// The entry.
        name: String,
        /// The comparison's report.
        report: Box<crate::Comparison>,
    },
    /// Reading or writing an array or a file failed.
    #[error(transparent)]
    Core(#[from] ferry_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
