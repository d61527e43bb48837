//! Files and streams of tensor columns: Arrow IPC (file and stream) and Parquet, each keeping
//! the tensor extension types (they travel as field metadata); [`TensorWriter`], which appends
//! record batches with bounded memory; and [`DatasetWriter`], a hive-partitioned folder
//! (`key=value/part-0.parquet`) that engines read in parallel.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ::parquet::arrow::ArrowWriter;
use ::parquet::file::properties::WriterProperties;
use arrow_array::{RecordBatch, RecordBatchReader, RecordBatchWriter};
use arrow_ipc::writer::{FileWriter, StreamWriter};
use arrow_schema::SchemaRef;

use crate::{Error, Result};

/// Arrow IPC: the file format (`.arrow`, random access, footer) and the stream format.
pub mod ipc {
    use super::*;
    use arrow_ipc::reader::{FileReader, StreamReader};

    /// Writes `batches` (all with one schema) to a new Arrow IPC file at `path`.
    pub fn write_file(path: impl AsRef<Path>, batches: &[RecordBatch]) -> Result<()> {
        write_all(path.as_ref(), FileFormat::IpcFile, batches)
    }

    /// Every record batch of the Arrow IPC file at `path`.
    pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<RecordBatch>> {
        let path = path.as_ref();
        let file = File::open(path).map_err(Error::io(path))?;
        let reader = FileReader::try_new_buffered(file, None)?;
        Ok(reader.collect::<Result<_, _>>()?)
    }

    /// Writes `batches` (all with one schema) as an Arrow IPC stream to `out`, and returns it.
    pub fn write_stream<W: Write>(out: W, batches: &[RecordBatch]) -> Result<W> {
        let schema = schema_of(batches)?;
        let mut writer = StreamWriter::try_new(out, &schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
        Ok(writer.into_inner()?)
    }

    /// Every record batch of the Arrow IPC stream read from `input`.
    pub fn read_stream<R: Read>(input: R) -> Result<Vec<RecordBatch>> {
        let reader = StreamReader::try_new_buffered(input, None)?;
        Ok(reader.collect::<Result<_, _>>()?)
    }
}

/// Parquet files (the Arrow schema, with the tensor extension types, is stored in the file's
/// `ARROW:schema` metadata, so pyarrow and ferry read the columns back as tensors).
pub mod parquet {
    use super::*;
    use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Writes `batches` (all with one schema) to a new Parquet file at `path` (one row group
    /// per 128 MiB of encoded data, no compression, no dictionary for tensor columns:
    /// [`TensorWriter::create`]).
    pub fn write_file(path: impl AsRef<Path>, batches: &[RecordBatch]) -> Result<()> {
        write_all(path.as_ref(), FileFormat::Parquet, batches)
    }

    /// Every record batch of the Parquet file at `path`.
    pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<RecordBatch>> {
        batches(path)?.collect()
    }

    /// The record batches of the Parquet file at `path`, decoded one at a time (for files
    /// larger than memory).
    pub fn batches(path: impl AsRef<Path>) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
        let path = path.as_ref();
        let file = File::open(path).map_err(Error::io(path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
        Ok(reader.map(|batch| batch.map_err(Error::from)))
    }
}

/// The formats [`TensorWriter`] and [`DatasetWriter`] write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileFormat {
    /// Parquet (`.parquet`).
    Parquet,
    /// Arrow IPC file (`.arrow`).
    IpcFile,
    /// Arrow IPC stream (`.arrows`).
    IpcStream,
}

impl FileFormat {
    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::IpcFile => "arrow",
            FileFormat::IpcStream => "arrows",
        }
    }
}

/// Encoded Parquet data held in memory before a row group is written out.
const ROW_GROUP_BYTES: usize = 128 << 20;

enum Sink {
    Parquet(ArrowWriter<BufWriter<File>>),
    IpcFile(FileWriter<BufWriter<File>>),
    IpcStream(StreamWriter<BufWriter<File>>),
    Writer(Box<dyn AnyWriter>),
}

/// A [`RecordBatchWriter`] behind a box (its `close` takes `self`, which a trait object
/// cannot give).
trait AnyWriter: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    fn close(self: Box<Self>) -> Result<()>;
}

impl<W: RecordBatchWriter + Send> AnyWriter for W {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Ok(RecordBatchWriter::write(self, batch)?)
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(RecordBatchWriter::close(*self)?)
    }
}

/// Writes record batches of one schema as they come, so a dataset larger than memory is
/// written batch by batch: to a file ([`create`](Self::create): IPC writes each batch at
/// once; Parquet holds at most one row group, 128 MiB of encoded data by default, before
/// writing it out), or through any [`RecordBatchWriter`] ([`new`](Self::new): a Parquet or IPC
/// writer over a buffer or an object store, a Lance or engine writer).
pub struct TensorWriter {
    sink: Sink,
    path: Option<PathBuf>,
    schema: SchemaRef,
    rows: usize,
    row_group_bytes: usize,
}

impl std::fmt::Debug for TensorWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorWriter")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl TensorWriter {
    /// A new file at `path` in `format` for batches of `schema`. Parquet is written
    /// uncompressed, with statistics per column chunk, but for tensor columns: no dictionary
    /// encoding (float tensor values rarely repeat, so the dictionary attempt only costs time)
    /// and no statistics (a min and max over every element of every tensor in a row group
    /// prunes no query, and computing them is a quarter of the write), in mini-batches of
    /// 16 Ki values; [`create_with`](Self::create_with) takes other properties.
    pub fn create(
        path: impl AsRef<Path>,
        format: FileFormat,
        schema: SchemaRef,
    ) -> Result<TensorWriter> {
        let properties = match format {
            FileFormat::Parquet => Some(tensor_properties(&schema)?),
            _ => None,
        };
        Self::create_with(path, format, schema, properties)
    }

    /// Like [`create`](Self::create), with Parquet writer properties (compression, encodings,
    /// row group size; `None`: arrow-rs's defaults); ignored for IPC.
    pub fn create_with(
        path: impl AsRef<Path>,
        format: FileFormat,
        schema: SchemaRef,
        properties: Option<WriterProperties>,
    ) -> Result<TensorWriter> {
        let path = path.as_ref().to_path_buf();
        let file = BufWriter::new(File::create(&path).map_err(Error::io(&path))?);
        let sink = match format {
            FileFormat::Parquet => {
                Sink::Parquet(ArrowWriter::try_new(file, schema.clone(), properties)?)
            }
            FileFormat::IpcFile => Sink::IpcFile(FileWriter::try_new(file, &schema)?),
            FileFormat::IpcStream => Sink::IpcStream(StreamWriter::try_new(file, &schema)?),
        };
        Ok(TensorWriter {
            sink,
            path: Some(path),
            schema,
            rows: 0,
            row_group_bytes: ROW_GROUP_BYTES,
        })
    }

    /// Writes batches of `schema` through `writer` (checked against `schema` as
    /// [`write`](Self::write) says; [`finish`](Self::finish) closes it).
    ///
    /// ```
    /// use ferry_arrow::{TensorColumn, TensorWriter, record_batch};
    /// use ferry_arrow::arrow_array::RecordBatchReader;
    /// use ferry_core::HostArray;
    ///
    /// let x = HostArray::from_vec(vec![3, 2], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    /// let batch = record_batch([TensorColumn::from_batch("x", &x)?])?;
    /// let ipc = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema())?;
    /// let mut writer = TensorWriter::new(ipc, batch.schema());
    /// writer.write(&batch)?;
    /// assert_eq!(writer.finish()?, 3);
    /// # Ok::<(), ferry_arrow::Error>(())
    /// ```
    pub fn new<W>(writer: W, schema: SchemaRef) -> TensorWriter
    where
        W: RecordBatchWriter + Send + 'static,
    {
        TensorWriter {
            sink: Sink::Writer(Box::new(writer)),
            path: None,
            schema,
            rows: 0,
            row_group_bytes: ROW_GROUP_BYTES,
        }
    }

    /// Writes every batch `reader` gives (its schema must be the writer's); returns the rows
    /// written from it. A batch the reader fails to give stops the copy with its error.
    pub fn write_all(&mut self, reader: impl RecordBatchReader) -> Result<usize> {
        let before = self.rows;
        for batch in reader {
            self.write(&batch?)?;
        }
        Ok(self.rows - before)
    }

    /// Caps the encoded Parquet data held in memory before a row group is written (default
    /// 128 MiB).
    pub fn with_row_group_bytes(mut self, bytes: usize) -> TensorWriter {
        self.row_group_bytes = bytes.max(1);
        self
    }

    /// Appends `batch` (its schema must be the writer's).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema() != self.schema {
            return Err(Error::Arrow(arrow_schema::ArrowError::SchemaError(
                format!(
                    "{}: batch schema {:?} differs from the writer's {:?}",
                    self.label(),
                    batch.schema(),
                    self.schema
                ),
            )));
        }
        let total = self.rows.checked_add(batch.num_rows()).ok_or_else(|| {
            Error::Arrow(arrow_schema::ArrowError::InvalidArgumentError(format!(
                "{}: more rows than a usize counts",
                self.label()
            )))
        })?;
        match &mut self.sink {
            Sink::Parquet(w) => {
                // In slices of about PARQUET_SLICE_BYTES: the writer works out repetition and
                // definition levels (two i16 per tensor element) for all it is given at once,
                // so a whole 64 MiB batch would cost 64 MiB of fresh level buffers, faulted in
                // page by page; a slice's buffers stay small and are reused.
                let rows = (PARQUET_SLICE_BYTES / row_bytes(batch).max(1)).max(1);
                let mut offset = 0;
                loop {
                    let n = rows.min(batch.num_rows() - offset);
                    w.write(&batch.slice(offset, n))?;
                    if w.in_progress_size() >= self.row_group_bytes {
                        w.flush()?;
                    }
                    offset += n;
                    if offset == batch.num_rows() {
                        break;
                    }
                }
            }
            Sink::IpcFile(w) => w.write(batch)?,
            Sink::IpcStream(w) => w.write(batch)?,
            Sink::Writer(w) => w.write(batch)?,
        }
        self.rows = total;
        Ok(())
    }

    /// Parquet row groups written out so far (0 for IPC).
    pub fn row_groups(&self) -> usize {
        match &self.sink {
            Sink::Parquet(w) => w.flushed_row_groups().len(),
            _ => 0,
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The file being written (`None` for a writer made with [`new`](Self::new)).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn label(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "TensorWriter".to_owned(),
        }
    }

    /// Writes what is buffered and the file's footer, and closes it (flushed to the operating
    /// system, not synced to disk), or closes the writer given to [`new`](Self::new); returns
    /// the rows written.
    pub fn finish(self) -> Result<usize> {
        let TensorWriter {
            sink, path, rows, ..
        } = self;
        let flushed = match sink {
            Sink::Writer(w) => {
                w.close()?;
                return Ok(rows);
            }
            Sink::Parquet(w) => w.into_inner().map_err(Error::from),
            Sink::IpcFile(mut w) => w
                .finish()
                .and_then(|()| w.into_inner())
                .map_err(Error::from),
            Sink::IpcStream(mut w) => w
                .finish()
                .and_then(|()| w.into_inner())
                .map_err(Error::from),
        };
        // Flushed to the OS (as pyarrow and arrow-rs leave it); not fsync'd.
        flushed?
            .into_inner()
            .map_err(|e| Error::io(&path.unwrap_or_default())(e.into_error()))?;
        Ok(rows)
    }
}

/// A hive-partitioned dataset: one folder per value of the partition key
/// (`root/key=value/part-0.parquet`), written batch by batch through one [`TensorWriter`] per
/// partition. DataFusion, Ray Data, pyarrow.dataset and Spark read such a folder in parallel and
/// recover the key as a column.
#[derive(Debug)]
pub struct DatasetWriter {
    root: PathBuf,
    key: String,
    format: FileFormat,
    schema: SchemaRef,
    writers: BTreeMap<String, TensorWriter>,
}

impl DatasetWriter {
    /// A dataset in folder `root` (created if missing), partitioned by `key`, of files in
    /// `format` holding batches of `schema` (the key is in the folder names, not the files).
    pub fn create(
        root: impl AsRef<Path>,
        key: &str,
        format: FileFormat,
        schema: SchemaRef,
    ) -> Result<DatasetWriter> {
        check_partition_part("partition key", key)?;
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(Error::io(&root))?;
        Ok(DatasetWriter {
            root,
            key: key.to_owned(),
            format,
            schema,
            writers: BTreeMap::new(),
        })
    }

    /// Appends `batch` to the partition `value` (its file is created on first use).
    pub fn write(&mut self, value: &str, batch: &RecordBatch) -> Result<()> {
        if !self.writers.contains_key(value) {
            check_partition_part("partition value", value)?;
            let dir = self.root.join(format!("{}={value}", self.key));
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
            let path = dir.join(format!("part-0.{}", self.format.extension()));
            let writer = TensorWriter::create(path, self.format, self.schema.clone())?;
            self.writers.insert(value.to_owned(), writer);
        }
        self.writers
            .get_mut(value)
            .expect("inserted above")
            .write(batch)
    }

    /// Closes every partition's file; returns their paths, in partition order.
    pub fn finish(self) -> Result<Vec<PathBuf>> {
        self.writers
            .into_values()
            .map(|w| {
                let path = w.path().map(Path::to_path_buf).unwrap_or_default();
                w.finish().map(|_| path)
            })
            .collect()
    }
}

/// Bytes of a record batch handed to the Parquet writer at a time ([`TensorWriter::write`]).
const PARQUET_SLICE_BYTES: usize = 1 << 20;

/// About how many bytes one row of `batch` holds, read from the column types alone: a
/// fixed-width column's (a tensor column's: its list size times the element's width) exactly,
/// any other's as its buffers over its rows. Nothing in the batch's data is read (a sliced batch
/// shares whole buffers, and arrow's slice sizes index offsets an empty array may not have).
fn row_bytes(batch: &RecordBatch) -> usize {
    fn fixed_width(data_type: &arrow_schema::DataType) -> Option<usize> {
        match data_type {
            arrow_schema::DataType::FixedSizeList(item, size) => {
                fixed_width(item.data_type())?.checked_mul(usize::try_from(*size).ok()?)
            }
            other => other.primitive_width(),
        }
    }
    let rows = batch.num_rows().max(1);
    batch
        .columns()
        .iter()
        .map(|c| fixed_width(c.data_type()).unwrap_or_else(|| c.get_array_memory_size() / rows))
        .fold(0, usize::saturating_add)
}

/// ferry's default Parquet properties for `schema`: see [`TensorWriter::create`].
fn tensor_properties(schema: &arrow_schema::Schema) -> Result<WriterProperties> {
    use ::parquet::arrow::ArrowSchemaConverter;
    use ::parquet::file::properties::EnabledStatistics;
    let tensors: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| {
            matches!(
                f.extension_type_name(),
                Some(crate::FIXED_SHAPE_TENSOR | crate::VARIABLE_SHAPE_TENSOR)
            )
        })
        .map(|f| f.name().as_str())
        .collect();
    let mut builder = WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_write_batch_size(16 * 1024);
    let leaves = ArrowSchemaConverter::new().convert(schema)?;
    for leaf in leaves.columns() {
        if leaf
            .path()
            .parts()
            .first()
            .is_some_and(|top| tensors.contains(&top.as_str()))
        {
            builder = builder
                .set_column_dictionary_enabled(leaf.path().clone(), false)
                .set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::None);
        }
    }
    Ok(builder.build())
}

/// Refuses partition keys and values that would not make one plain folder name.
fn check_partition_part(what: &'static str, text: &str) -> Result<()> {
    let bad = text.is_empty()
        || text == "."
        || text == ".."
        || text.contains(['/', '\\', '=', '\0'])
        || text.starts_with(['.', '_']);
    if bad {
        return Err(Error::Io {
            path: PathBuf::from(text),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{what} {text:?} cannot name a hive partition folder: use a non-empty name without '/', '\\', '=' that does not start with '.' or '_'"
                ),
            ),
        });
    }
    Ok(())
}

fn schema_of(batches: &[RecordBatch]) -> Result<SchemaRef> {
    batches.first().map(RecordBatch::schema).ok_or_else(|| {
        Error::Arrow(arrow_schema::ArrowError::InvalidArgumentError(
            "no record batches to write: a file needs at least one for its schema".into(),
        ))
    })
}

fn write_all(path: &Path, format: FileFormat, batches: &[RecordBatch]) -> Result<()> {
    let mut writer = TensorWriter::create(path, format, schema_of(batches)?)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish().map(|_| ())
}
