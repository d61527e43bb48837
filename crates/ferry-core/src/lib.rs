//! `ferry-core`: the interchange layer of ferry — [`HostArray`] (a strided host array with a
//! runtime dtype that owns, borrows or keeps alive foreign memory), dtypes, layout checks,
//! DLPack 1.3 import/export, errors, copy accounting, and the [`Backend`] trait every framework
//! adapter implements. It knows no framework, no file format and no Python.
//!
//! ```
//! use ferry_core::{HostArray, CopyPolicy};
//!
//! let a = HostArray::from_vec(vec![2, 3], vec![0f32, 1., 2., 3., 4., 5.])?;
//! // DLPack out and back in: same memory, no copy.
//! let b = a.to_dlpack().into_host()?;
//! assert_eq!(b.view::<f32>()?, a.view::<f32>()?);
//! assert_eq!(b.copies(), 0);
//! // A transposed view needs a copy to become row-major; `Never` refuses it.
//! let t = HostArray::from_array(a.to_array::<f32>()?.reversed_axes());
//! assert!(t.to_contiguous(CopyPolicy::Never).is_err());
//! assert_eq!(t.to_contiguous(CopyPolicy::IfNeeded)?.copies(), 1);
//! # Ok::<(), ferry_core::Error>(())
//! ```

mod array;
mod backend;
mod cast;
pub mod copy;
mod device;
pub mod dlpack;
mod dtype;
mod error;
pub mod layout;
mod storage;
mod unwind;

pub use array::{Access, HostArray, Owner, RawLayout, RawParts};
pub use backend::Backend;
pub use copy::{
    CopyPolicy, CopyReason, CopyRecord, CopyTotals, copy_totals, record_copy, set_copy_threads,
};
pub use device::{Device, MemoryKind};
pub use dlpack::{DlpackTensor, RawDlpack};
pub use dtype::{DType, DTypeDesc, Element, RawDType, raw_dtypes};
pub use error::{Error, Result};
pub use storage::{Storage, StorageLayout, StorageLayoutRef, StorageMut};
pub use unwind::drop_without_unwinding;

/// Re-exported for [`DlpackTensor::into_raw`] pointers and adapter exports.
pub use dlpack_rs;
/// Re-exported for element types and the [`dispatch_dtype!`] macro.
pub use half;
/// Re-exported: the views and arrays ferry hands out.
pub use ndarray;
/// Re-exported for complex element types.
pub use num_complex;
