//! `ferry-arrow`: Apache Arrow for ferry's host arrays, so tensors from candle, Burn and tch
//! reach the engines that distribute work (DataFusion, Ray Data, Spark, Lance) and their files.
//!
//! - [`to_arrow`]/[`from_arrow`]: a 1-D host array ↔ an Arrow primitive array, zero-copy both
//!   ways (Arrow's buffer keeps ferry's owner alive; an array from Arrow keeps Arrow's buffer
//!   alive and is read-only).
//! - [`TensorColumn`]: a batch of tensors ↔ a canonical `arrow.fixed_shape_tensor` column (a
//!   permuted layout travels without a copy through the extension's `permutation`), ragged
//!   tensors ↔ `arrow.variable_shape_tensor`; [`record_batch`], [`column()`], [`columns`].
//! - Feature `files` (default): `ipc` and `parquet` files and streams, `TensorWriter` (batch
//!   by batch, bounded memory) and `DatasetWriter` (a hive-partitioned folder of Parquet
//!   files).
//! - [`TensorReader`]: the tensor columns of any `RecordBatchReader`, batch by batch or joined.
//! - [`ffi`]: the Arrow C Data Interface structs for a column and the C stream interface
//!   (import any producer's stream, export any `RecordBatchReader`), for ferry's Python module
//!   and other languages.
//!
//! The only ferry crate that knows Arrow. Dtypes: f16, f32, f64, i8–i64, u8–u64 one-to-one;
//! `bool` is bit-packed in Arrow (one recorded copy each way); bf16, complex and raw DLPack
//! dtypes are refused with what to cast to. Arrow columns with nulls are refused.
//!
//! ```
//! use ferry_arrow::{TensorColumn, record_batch, column};
//! use ferry_core::HostArray;
//!
//! // Four 2×3 tensors, transposed to 3×2 each: exported without a copy.
//! let batch = HostArray::from_vec(vec![4, 2, 3], (0..24).map(|i| i as f32).collect())?;
//! let transposed = HostArray::from_array(batch.to_array::<f32>()?.permuted_axes(vec![0, 2, 1]));
//! let col = TensorColumn::from_batch("x", &transposed)?;
//! assert_eq!(col.copy_log().len(), 0);
//! let rb = record_batch([col])?;
//! let back = column(&rb, "x")?.to_host()?;
//! assert_eq!(back.shape(), &[4, 3, 2]);
//! assert_eq!(back.view::<f32>()?, transposed.view::<f32>()?);
//! # Ok::<(), ferry_arrow::Error>(())
//! ```

mod buffer;
mod column;
mod dtype;
mod error;
pub mod ffi;
#[cfg(feature = "files")]
mod file;
mod metadata;
mod stream;

pub use column::{
    ColumnKind, FIXED_SHAPE_TENSOR, TensorColumn, VARIABLE_SHAPE_TENSOR, column, columns,
    from_arrow, record_batch, to_arrow,
};
pub use dtype::{arrow_type, ferry_dtype};
pub use error::{Error, Result};
#[cfg(feature = "files")]
pub use file::{DatasetWriter, FileFormat, TensorWriter, ipc, parquet};
pub use stream::{TensorReader, combine_chunks};

/// Re-exported: the Arrow types ferry hands out and takes.
pub use arrow_array;
/// Re-exported: Arrow schemas, fields and the tensor extension types.
pub use arrow_schema;
