//! The Arrow C Data Interface for tensor columns: a column's field and array as the C
//! `ArrowSchema`/`ArrowArray` structs (sharing its buffers), and a column from structs a
//! producer hands over. ferry's Python module wraps these in the Arrow PyCapsule interface.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow_array::{ArrayRef, make_array};
pub use arrow_data::ffi::FFI_ArrowArray;
pub use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{Field, FieldRef};

use crate::{Result, TensorColumn};

/// The column's field (name, type, extension metadata) as a C `ArrowSchema`.
pub fn export_schema(column: &TensorColumn) -> Result<FFI_ArrowSchema> {
    Ok(FFI_ArrowSchema::try_from(column.field().as_ref())?)
}

/// The column's array as a C `ArrowArray` sharing its buffers (its `release` drops them); a
/// column longer than the C interface's `int64_t` length holds is refused.
pub fn export_array(column: &TensorColumn) -> Result<FFI_ArrowArray> {
    if i64::try_from(column.len()).is_err() {
        return Err(arrow_schema::ArrowError::InvalidArgumentError(format!(
            "column {:?} has {} rows, more than the Arrow C interface's int64 length holds",
            column.name(),
            column.len()
        ))
        .into());
    }
    Ok(FFI_ArrowArray::new(&column.array().to_data()))
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
    // SAFETY: the caller's contract, which is `import_array`'s.
    let (field, array) = unsafe { import_array(array, schema) }?;
    TensorColumn::try_new(field, array)
}

/// The field and array of a producer's C structs, of any type (a struct array is a record
/// batch's columns: split it with [`split_struct`]), checked in full
/// (`ArrayData::validate_full`) with misaligned buffers copied into aligned ones; refuses
/// released structs as [`import`] does.
///
/// # Safety
///
/// As for [`import`].
pub unsafe fn import_array(
    array: FFI_ArrowArray,
    schema: &FFI_ArrowSchema,
) -> Result<(FieldRef, ArrayRef)> {
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
    Ok((Arc::new(field), make_array(data)))
}

/// The columns of a struct array (a record batch that crossed the C Data Interface, or one
/// row of a struct stream) as tensor columns, each with its child field's name and metadata.
/// A struct with null rows is refused (a record batch has none).
pub fn split_struct(field: &Field, array: &ArrayRef) -> Result<Vec<TensorColumn>> {
    use arrow_array::{Array, StructArray};
    use arrow_schema::DataType;
    let DataType::Struct(fields) = field.data_type() else {
        return TensorColumn::try_new(Arc::new(field.clone()), array.clone()).map(|c| vec![c]);
    };
    // arrow-rs's `StructArray::from(ArrayData)` takes any array's children as columns.
    crate::column::check_type(field, array)?;
    let data = array.to_data();
    let struct_array = StructArray::from(data);
    if struct_array.null_count() > 0 {
        return Err(crate::Error::Nulls {
            column: field.name().clone(),
            data_type: field.data_type().clone(),
            nulls: struct_array.null_count(),
        });
    }
    fields
        .iter()
        .zip(struct_array.columns())
        .map(|(f, a)| TensorColumn::try_new(f.clone(), a.clone()))
        .collect()
}

/// The Arrow C stream interface's struct, for [`import_stream`] and [`export_stream`].
pub use arrow_array::ffi_stream::FFI_ArrowArrayStream;

/// A producer's C stream read batch by batch: a stream of struct arrays (a table's, a record
/// batch reader's) as its record batches, a stream of any other type (a chunked array's, a
/// Polars Series') as one-column record batches whose field is the stream's. Every array is
/// checked in full as it arrives ([`import`]'s checks); after the end, or the first error
/// (after which the C stream interface allows nothing but release), it yields nothing more.
/// Read it with [`TensorReader`](crate::TensorReader).
#[derive(Debug)]
pub struct ImportedStream {
    arrays: arrow_array::ffi_stream::ArrayStreamReader,
    schema: arrow_schema::SchemaRef,
    struct_stream: bool,
    finished: bool,
}

impl ImportedStream {
    /// Whether the stream's arrays are structs (record batches: a table, a reader of batches)
    /// rather than one column's chunks.
    pub fn is_record_batches(&self) -> bool {
        self.struct_stream
    }

    fn checked(&self, array: arrow_array::ArrayRef) -> Result<arrow_array::RecordBatch> {
        use arrow_array::{Array, RecordBatch, RecordBatchOptions, StructArray};
        let data = array.to_data();
        data.validate_full()?;
        let rows = data.len();
        let columns = if self.struct_stream {
            let (_, columns, nulls) = StructArray::from(data).into_parts();
            if let Some(nulls) = nulls.filter(|n| n.null_count() > 0) {
                return Err(crate::Error::Nulls {
                    column: String::new(),
                    data_type: array.data_type().clone(),
                    nulls: nulls.null_count(),
                });
            }
            columns
        } else {
            vec![make_array(data)]
        };
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }
}

impl Iterator for ImportedStream {
    type Item = std::result::Result<arrow_array::RecordBatch, arrow_schema::ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let next = self.arrays.next().map(|array| {
            array
                .map_err(crate::Error::from)
                .and_then(|a| self.checked(a))
        });
        if !matches!(next, Some(Ok(_))) {
            self.finished = true;
        }
        next.map(|batch| {
            batch.map_err(|e| match e {
                crate::Error::Arrow(arrow) => arrow,
                // Unwrapped again by `Error::from_arrow` (TensorReader does).
                ferry => arrow_schema::ArrowError::ExternalError(Box::new(ferry)),
            })
        })
    }
}

impl arrow_array::RecordBatchReader for ImportedStream {
    fn schema(&self) -> arrow_schema::SchemaRef {
        self.schema.clone()
    }
}

/// Reads a producer's C stream ([`ImportedStream`]): takes `stream` over (its `release` runs
/// when the reader drops) and asks it for its schema. A released stream, or one missing a
/// callback the interface requires, is refused with
/// [`Error::Released`](crate::Error::Released) or an Arrow error before any callback runs.
/// (A Rust `RecordBatchReader` needs no C stream: read it with
/// [`TensorReader`](crate::TensorReader).)
///
/// # Safety
///
/// - `stream`'s callbacks keep the C stream interface: every array `get_next` gives is of the
///   type `get_schema` gave, with buffers that hold what that type says (lengths, offsets,
///   children) and stay readable, unwritten, until the array's `release` runs;
/// - so a stream made with arrow-rs's safe `FFI_ArrowArrayStream::new` qualifies only when its
///   reader's batches are of its `schema()` exactly (arrow-rs does not check, and its
///   callbacks abort the process on a reader error holding a NUL or a reader panic):
///   [`export_stream`] checks both.
pub unsafe fn import_stream(stream: FFI_ArrowArrayStream) -> Result<ImportedStream> {
    use arrow_schema::{ArrowError, DataType, Schema};
    if stream.release().is_none() {
        return Err(crate::Error::Released {
            what: "ArrowArrayStream",
        });
    }
    if stream.get_schema().is_none() || stream.get_next().is_none() {
        return Err(ArrowError::CDataInterface(
            "the ArrowArrayStream has no get_schema or get_next callback; ask its producer for a complete stream".into(),
        )
        .into());
    }
    let arrays = arrow_array::ffi_stream::ArrayStreamReader::try_new(stream)?;
    let field = arrow_array::ArrayReader::field(&arrays).clone();
    let (schema, struct_stream) = match field.data_type() {
        DataType::Struct(fields) => (
            Schema::new(fields.clone()).with_metadata(field.metadata().clone()),
            true,
        ),
        _ => (Schema::new(vec![field]), false),
    };
    Ok(ImportedStream {
        arrays,
        schema: Arc::new(schema),
        struct_stream,
        finished: false,
    })
}

/// `reader` as a C stream of struct arrays for a consumer in another language or library
/// (pyarrow's `RecordBatchReader`, DuckDB, Polars). The stream's callbacks never unwind or
/// abort: a panic of `reader` becomes an error the consumer reads, a NUL in an error message
/// is escaped, and the schema is the one given here on every call. A schema the C Data
/// Interface cannot carry is refused here.
pub fn export_stream<R>(reader: R) -> Result<FFI_ArrowArrayStream>
where
    R: arrow_array::RecordBatchReader + Send + 'static,
{
    let schema = reader.schema();
    // Checked now: the exported stream's get_schema converts it again on every call.
    FFI_ArrowSchema::try_from(schema.as_ref())?;
    Ok(FFI_ArrowArrayStream::new(Box::new(Guarded {
        reader: Some(reader),
        schema,
        finished: false,
    })))
}

/// A reader whose calls cannot unwind into a C callback (arrow-rs's exported callbacks are
/// `extern "C"`: a panic there aborts), whose errors carry no NUL (arrow-rs puts them in a
/// `CString` with `expect`), whose batches are exactly of the schema given at export (a
/// consumer reads them by that schema), and which ends after its first error.
struct Guarded<R> {
    /// `None` only while dropping.
    reader: Option<R>,
    schema: arrow_schema::SchemaRef,
    finished: bool,
}

type BatchResult = std::result::Result<arrow_array::RecordBatch, arrow_schema::ArrowError>;

impl<R: Iterator<Item = BatchResult>> Guarded<R> {
    /// The reader's next batch, checked, or its error, escaped: everything that runs the
    /// reader's code (its `next`, its error's `Display`), for `catch_unwind`.
    fn next_checked(&mut self) -> Option<BatchResult> {
        let next = self.reader.as_mut()?.next()?;
        Some(next.and_then(|batch| self.check(batch)).map_err(escaped))
    }

    /// Refuses a batch the consumer would misread: one whose schema, or a column's type (a
    /// batch's schema can equal the stream's while a column's type only "equals" its field's:
    /// a union's children in another order), is not the stream's, one with a child not of the
    /// type its parent declares, or with more rows than the C interface's `int64_t` length
    /// holds.
    fn check(&self, batch: arrow_array::RecordBatch) -> BatchResult {
        use arrow_schema::ArrowError;
        let types_match = batch.schema() == self.schema
            && batch
                .columns()
                .iter()
                .zip(self.schema.fields())
                .all(|(column, field)| column.data_type() == field.data_type());
        // Each column's children against its type, level by level (arrow-rs's safe
        // `UnionArray::try_new` does not check that a child is of its field's type, and a
        // consumer sizes the child's buffers by the field): `validate`, without the full
        // per-value pass.
        if let Some(error) = batch
            .columns()
            .iter()
            .find_map(|column| column.to_data().validate().err())
        {
            return Err(error);
        }
        if !types_match {
            return Err(ArrowError::SchemaError(format!(
                "the reader gave a batch of schema {:?} with column types {:?}, not the stream's schema {:?}",
                batch.schema(),
                batch
                    .columns()
                    .iter()
                    .map(|c| c.data_type())
                    .collect::<Vec<_>>(),
                self.schema
            )));
        }
        if i64::try_from(batch.num_rows()).is_err() {
            return Err(ArrowError::InvalidArgumentError(format!(
                "the reader gave a batch of {} rows, more than the Arrow C interface's int64 length holds",
                batch.num_rows()
            )));
        }
        Ok(batch)
    }
}

/// `error` with its NULs written as `\0` (its kind kept where arrow-rs maps it to an errno),
/// holding nothing of the reader's but text: arrow-rs drops the error inside its `extern "C"`
/// get_next, where a panic of the reader's `io::Error` source or boxed error aborts, so the
/// original is rendered and dropped here, under the caller's `catch_unwind`.
fn escaped(error: arrow_schema::ArrowError) -> arrow_schema::ArrowError {
    use arrow_schema::ArrowError;
    let escape = |message: String| message.replace('\0', "\\0");
    match error {
        // The reader's parts are dropped before the new error is made: a value already made
        // when a later drop panics is leaked while unwinding (rust-lang/rust#47949).
        ArrowError::IoError(message, source) => {
            let kind = source.kind();
            drop(source);
            ArrowError::IoError(escape(message), std::io::Error::from(kind))
        }
        ArrowError::MemoryError(message) => ArrowError::MemoryError(escape(message)),
        ArrowError::NotYetImplemented(message) => ArrowError::NotYetImplemented(escape(message)),
        other => {
            let message = other.to_string();
            drop(other);
            ArrowError::InvalidArgumentError(escape(message))
        }
    }
}

impl<R: Iterator<Item = BatchResult>> Iterator for Guarded<R> {
    type Item = BatchResult;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let next = match catch_unwind(AssertUnwindSafe(|| self.next_checked())) {
            Ok(next) => next,
            Err(payload) => {
                ferry_core::drop_without_unwinding(payload);
                Some(Err(arrow_schema::ArrowError::ExternalError(
                    "the record batch reader panicked".into(),
                )))
            }
        };
        if !matches!(next, Some(Ok(_))) {
            self.finished = true;
        }
        next
    }
}

impl<R> Drop for Guarded<R> {
    fn drop(&mut self) {
        // Dropped by the stream's `release`, a C callback: the reader's drop must not unwind.
        ferry_core::drop_without_unwinding(self.reader.take());
    }
}

impl<R: arrow_array::RecordBatchReader> arrow_array::RecordBatchReader for Guarded<R> {
    fn schema(&self) -> arrow_schema::SchemaRef {
        self.schema.clone()
    }
}
