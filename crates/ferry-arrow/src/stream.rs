//! Streams of record batches holding tensor columns: [`TensorReader`] reads any
//! `RecordBatchReader` (an Arrow IPC or Parquet reader, a C stream import from
//! [`ffi::import_stream`](crate::ffi::import_stream), an engine's output) column by column,
//! one host array per batch or the batches' rows joined into one.

use arrow_array::{RecordBatch, RecordBatchReader, new_empty_array};
use std::sync::Arc;

use arrow_schema::{Field, SchemaRef};
use ferry_core::HostArray;

use crate::{Error, Result, TensorColumn, column, columns};

/// Tensor columns read batch by batch from any [`RecordBatchReader`]: iterate for each batch's
/// columns, or take one column of every batch with [`read_column`](Self::read_column) and
/// [`read_column_combined`](Self::read_column_combined).
///
/// ```
/// use ferry_arrow::{TensorColumn, TensorReader, record_batch};
/// use ferry_arrow::arrow_array::RecordBatchIterator;
/// use ferry_core::HostArray;
///
/// let batches = (0..3).map(|b| {
///     let x = HostArray::from_vec(vec![2, 4], vec![b as f32; 8])?;
///     record_batch([TensorColumn::from_batch("x", &x)?])
/// }).collect::<Result<Vec<_>, _>>()?;
/// let schema = batches[0].schema();
/// let reader = TensorReader::new(RecordBatchIterator::new(batches.into_iter().map(Ok), schema));
/// let x = reader.read_column_combined("x")?;
/// assert_eq!(x.shape(), &[6, 4]);
/// assert_eq!(x.copies(), 1); // the three batches' rows, joined once
/// # Ok::<(), ferry_arrow::Error>(())
/// ```
#[derive(Debug)]
pub struct TensorReader<R> {
    reader: R,
}

impl<R: RecordBatchReader> TensorReader<R> {
    /// Reads the batches of `reader`.
    pub fn new(reader: R) -> TensorReader<R> {
        TensorReader { reader }
    }

    /// The schema every batch has.
    pub fn schema(&self) -> SchemaRef {
        self.reader.schema()
    }

    /// The reader underneath.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// The next record batch as it came (columns of any type), `None` at the end.
    pub fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        self.reader
            .next()
            .map(|batch| batch.map_err(Error::from_arrow))
    }

    /// Column `name` of every remaining batch, one column per batch, each sharing its batch's
    /// memory. A name the schema lacks is refused before any batch is read.
    pub fn read_column(mut self, name: &str) -> Result<Vec<TensorColumn>> {
        self.check_column(name)?;
        let mut chunks = Vec::new();
        while let Some(batch) = self.next_batch() {
            chunks.push(column(&batch?, name)?);
        }
        Ok(chunks)
    }

    /// Column `name` of every remaining batch as one host array whose first axis is the rows
    /// of all batches: the one batch's memory when there is one (no copy), else the batches
    /// joined (one recorded copy, [`HostArray::concat_rows`]); with no batch, an empty array
    /// of the column's dtype and tensor shape. A variable-shape column is refused (take it with
    /// [`read_column`](Self::read_column) and
    /// [`TensorColumn::to_host_tensors`]).
    pub fn read_column_combined(self, name: &str) -> Result<HostArray> {
        // The field is looked up in one `schema()` answer, not a second that may differ.
        let schema = self.schema();
        let Some((_, field)) = schema.column_with_name(name) else {
            return Err(no_such_column(name, &schema));
        };
        let field = field.clone();
        let chunks = self.read_column(name)?;
        combine_chunks(&field, &chunks)
    }

    fn check_column(&self, name: &str) -> Result<()> {
        let schema = self.schema();
        match schema.column_with_name(name) {
            Some(_) => Ok(()),
            None => Err(no_such_column(name, &schema)),
        }
    }
}

fn no_such_column(name: &str, schema: &arrow_schema::Schema) -> Error {
    Error::NoSuchColumn {
        column: name.to_owned(),
        available: schema.fields().iter().map(|f| f.name().clone()).collect(),
    }
}

impl<R: RecordBatchReader> Iterator for TensorReader<R> {
    /// Every column of the next batch ([`columns()`]: a column ferry cannot read is an error).
    type Item = Result<Vec<TensorColumn>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
            .map(|batch| batch.and_then(|batch| columns(&batch)))
    }
}

/// One column's chunks (of `field`) as one host array whose first axis is the rows of all:
/// the one chunk's memory when there is one (no copy), else the chunks joined (one recorded
/// copy, [`HostArray::concat_rows`]); with no chunk, an empty array of the column's dtype and
/// tensor shape. A variable-shape column is refused (its rows are arrays of their own shapes:
/// take each chunk's [`TensorColumn::to_host_tensors`]).
pub fn combine_chunks(field: &Field, chunks: &[TensorColumn]) -> Result<HostArray> {
    if chunks.is_empty() {
        let field = Arc::new(field.clone());
        let empty = new_empty_array(field.data_type());
        return TensorColumn::try_new(field, empty)?.to_host();
    }
    let parts = chunks
        .iter()
        .map(TensorColumn::to_host)
        .collect::<Result<Vec<_>>>()?;
    Ok(HostArray::concat_rows(&parts)?)
}
