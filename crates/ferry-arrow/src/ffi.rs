//! The Arrow C Data Interface for tensor columns: a column's field and array as the C
//! `ArrowSchema`/`ArrowArray` structs (sharing its buffers), and a column from structs a
//! producer hands over. ferry's Python module wraps these in the Arrow PyCapsule interface.

use std::sync::Arc;

use arrow_array::make_array;
pub use arrow_data::ffi::FFI_ArrowArray;
use arrow_schema::Field;
pub use arrow_schema::ffi::FFI_ArrowSchema;

use crate::{Result, TensorColumn};

/// The column's field (name, type, extension metadata) as a C `ArrowSchema`.
pub fn export_schema(column: &TensorColumn) -> Result<FFI_ArrowSchema> {
    Ok(FFI_ArrowSchema::try_from(column.field().as_ref())?)
}

/// The column's array as a C `ArrowArray` sharing its buffers (its `release` drops them).
pub fn export_array(column: &TensorColumn) -> FFI_ArrowArray {
    FFI_ArrowArray::new(&column.array().to_data())
}

/// A column from a producer's C structs, checked as [`TensorColumn::try_new`] checks: takes
/// `array` over (its `release` runs when the last buffer built on it drops), reads `schema`.
/// Buffers misaligned for their type are copied into aligned ones. A struct that was released
/// already (`release` NULL: a consumer moved it out before, and every other field is stale) is
/// refused with [`Error::Released`](crate::Error::Released) before anything else of it is read.
///
/// # Safety
///
/// - `array` and `schema` follow the Arrow C Data Interface: `schema` describes `array`, and
///   every buffer `array` points to holds what that description says it holds (lengths,
///   offsets, child arrays), readable until `array`'s `release` is called;
/// - nobody writes those buffers while `array` is not released (Arrow arrays are immutable).
pub unsafe fn import(array: FFI_ArrowArray, schema: &FFI_ArrowSchema) -> Result<TensorColumn> {
    if schema.release().is_none() {
        return Err(crate::Error::Released {
            what: "ArrowSchema",
        });
    }
    if array.is_released() {
        return Err(crate::Error::Released { what: "ArrowArray" });
    }
    let field = Field::try_from(schema)?;
    // SAFETY: the caller promises the structs are a valid pair per the C Data Interface;
    // `from_ffi` takes `array` over and keeps it alive in the buffers it builds.
    let mut data = unsafe { arrow_array::ffi::from_ffi(array, schema)? };
    data.align_buffers();
    data.validate_full()?;
    TensorColumn::try_new(Arc::new(field), make_array(data))
}
