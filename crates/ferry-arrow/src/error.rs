//! The one error type of `ferry-arrow`: what was wrong with a dtype, a column, a file or a
//! layout, and what to do instead.

use arrow_schema::{ArrowError, DataType};
use ferry_core::DType;

/// Result alias for `ferry-arrow`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between ferry's host arrays and Arrow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A ferry dtype Arrow has no primitive type for (bf16, complex, raw DLPack dtypes).
    #[error("dtype {dtype} has no Arrow primitive type; {what_to_do}")]
    UnsupportedDtype {
        /// The array's dtype.
        dtype: DType,
        /// What to cast to instead.
        what_to_do: &'static str,
    },
    /// An Arrow type ferry cannot read as a host array.
    #[error(
        "column {column:?} has Arrow type {data_type}, which ferry does not read as a tensor: {what_to_do}"
    )]
    UnsupportedArrowType {
        /// The column's name ("" for a bare array).
        column: String,
        /// Its Arrow type.
        data_type: DataType,
        /// What ferry reads, or what to do.
        what_to_do: &'static str,
    },
    /// An Arrow column with nulls (ferry arrays have no validity bitmap).
    #[error(
        "column {column:?} ({data_type}) has {nulls} null value(s); ferry arrays have no nulls: fill them (pyarrow.compute.fill_null) or filter those rows out first"
    )]
    Nulls {
        /// The column's name ("" for a bare array).
        column: String,
        /// Its Arrow type.
        data_type: DataType,
        /// How many nulls (in the column or in its tensors' values).
        nulls: usize,
    },
    /// A shape that cannot become the asked Arrow layout.
    #[error("{what}: shape {shape:?} (dtype {dtype}) {reason}")]
    Shape {
        /// What was being built.
        what: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
        /// Its dtype.
        dtype: DType,
        /// Why it does not fit, and what to do.
        reason: String,
    },
    /// A tensor extension type whose metadata contradicts its storage.
    #[error("column {column:?}: invalid {extension} metadata: {reason}")]
    InvalidExtension {
        /// The column's name.
        column: String,
        /// The extension name (`arrow.fixed_shape_tensor`, `arrow.variable_shape_tensor`).
        extension: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A C Data Interface struct that was released already (`release` is NULL): a consumer
    /// moved it out of its capsule before, and its buffers may be gone.
    #[error(
        "the {what} was released already (a consumer moved it out of its capsule, and its buffers may be freed); ask the producer for a new one (call __arrow_c_array__ or __arrow_c_stream__ again)"
    )]
    Released {
        /// `ArrowArray`, `ArrowSchema` or `ArrowArrayStream`.
        what: &'static str,
    },
    /// A column name that the batch or file does not have.
    #[error("no column {column:?}; the columns are {available:?}")]
    NoSuchColumn {
        /// The name asked for.
        column: String,
        /// The names present.
        available: Vec<String>,
    },
    /// ferry-core refused (layout, alignment, allocation).
    #[error(transparent)]
    Core(#[from] ferry_core::Error),
    /// arrow-rs refused (schema mismatch, IPC format).
    #[error("Arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// The Parquet reader or writer refused.
    #[cfg(feature = "files")]
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The operating system refused a file operation.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl Error {
    /// An error a `RecordBatchReader` gave: ferry's own error when it is one that crossed the
    /// reader's `ArrowError` (an [`ImportedStream`](crate::ffi::ImportedStream)'s checks),
    /// else [`Error::Arrow`].
    pub fn from_arrow(error: ArrowError) -> Error {
        match error {
            ArrowError::ExternalError(inner) => match inner.downcast::<Error>() {
                Ok(ferry) => *ferry,
                Err(other) => Error::Arrow(ArrowError::ExternalError(other)),
            },
            other => Error::Arrow(other),
        }
    }

    #[cfg(feature = "files")]
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
