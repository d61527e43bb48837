//! Audit round 7, half B: scratch tests against the Arrow stream code (c58f331).

use std::sync::Arc;

use ferry::HostArray;
use ferry::arrow::arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, RecordBatchIterator,
    RecordBatchOptions, RecordBatchReader,
};
use ferry::arrow::arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use ferry::arrow::{TensorColumn, TensorReader, ffi};

fn one_batch() -> RecordBatch {
    let x = HostArray::from_vec(vec![2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
    ferry::arrow::record_batch([TensorColumn::from_batch("x", &x).unwrap()]).unwrap()
}

/// An error whose Display panics.
#[derive(Debug)]
struct PanickyDisplay;
impl std::fmt::Display for PanickyDisplay {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Display of the reader's error panicked")
    }
}
impl std::error::Error for PanickyDisplay {}

struct Reader {
    schema: SchemaRef,
    items: Vec<Result<RecordBatch, ArrowError>>,
    panic_with: Option<Box<dyn FnMut() + Send>>,
    panic_on_drop: bool,
}

impl Iterator for Reader {
    type Item = Result<RecordBatch, ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(f) = self.panic_with.as_mut() {
            f();
        }
        if self.items.is_empty() {
            None
        } else {
            Some(self.items.remove(0))
        }
    }
}
impl RecordBatchReader for Reader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
impl Drop for Reader {
    fn drop(&mut self) {
        if self.panic_on_drop {
            panic!("the reader's drop panicked");
        }
    }
}

fn reader(items: Vec<Result<RecordBatch, ArrowError>>) -> Reader {
    Reader {
        schema: one_batch().schema(),
        items,
        panic_with: None,
        panic_on_drop: false,
    }
}

/// F1: an ExternalError whose Display panics is formatted outside catch_unwind, inside the
/// extern "C" get_next: abort.
#[test]
fn a7b_error_display_panics_in_get_next() {
    let r = reader(vec![Err(ArrowError::ExternalError(Box::new(PanickyDisplay)))]);
    let stream = ffi::export_stream(r).unwrap();
    let mut imported = ffi::import_stream(stream).unwrap();
    let next = imported.next();
    eprintln!("survived: {:?}", next.map(|r| r.map(|_| ())));
}

/// F2: a reader whose Drop panics, dropped by release_stream (extern "C"): abort.
#[test]
fn a7b_reader_drop_panics_in_release() {
    let mut r = reader(vec![]);
    r.panic_on_drop = true;
    let stream = ffi::export_stream(r).unwrap();
    drop(stream);
    eprintln!("survived");
}

/// A panic payload whose Drop panics.
struct PanickyPayload;
impl Drop for PanickyPayload {
    fn drop(&mut self) {
        panic!("the panic payload's drop panicked");
    }
}

/// F3: catch_unwind's payload is dropped inside get_next: a payload whose drop panics aborts.
#[test]
fn a7b_panic_payload_drop_panics_in_get_next() {
    let mut r = reader(vec![]);
    r.panic_with = Some(Box::new(|| std::panic::panic_any(PanickyPayload)));
    let stream = ffi::export_stream(r).unwrap();
    let mut imported = ffi::import_stream(stream).unwrap();
    let next = imported.next();
    eprintln!("survived: {:?}", next.map(|r| r.map(|_| ())));
}

/// F4: a batch of more than i64::MAX rows (no columns) crosses as a negative length.
#[test]
fn a7b_huge_row_count_crosses_as_negative_length() {
    let schema = Arc::new(Schema::empty());
    for rows in [usize::MAX, i64::MAX as usize + 1, isize::MAX as usize] {
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .unwrap();
        let r = RecordBatchIterator::new(vec![Ok(batch)], schema.clone());
        let mut stream = ffi::export_stream(r).unwrap();
        // What a C consumer sees.
        let mut array = ffi::FFI_ArrowArray::empty();
        let rc = unsafe { stream.get_next().unwrap()(&mut stream, &mut array) };
        eprintln!("rows {rows}: rc {rc}, C length {}", array.len() as i64);
        drop(array);
        let r = RecordBatchIterator::new(
            vec![Ok(RecordBatch::try_new_with_options(
                schema.clone(),
                vec![],
                &RecordBatchOptions::new().with_row_count(Some(rows)),
            )
            .unwrap())],
            schema.clone(),
        );
        let imported = ffi::import_stream(ffi::export_stream(r).unwrap()).unwrap();
        for b in imported {
            eprintln!("  ferry import: {:?}", b.map(|b| b.num_rows()));
        }
    }
}

/// F5: zero-width FixedSizeList of more than isize::MAX rows, read as a tensor column.
#[test]
fn a7b_zero_width_fsl_huge_rows() {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    for rows in [isize::MAX as usize, isize::MAX as usize + 1, usize::MAX] {
        let list = FixedSizeListArray::try_new_with_length(
            item.clone(),
            0,
            Arc::new(Float32Array::from(Vec::<f32>::new())),
            None,
            rows,
        );
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rows {rows}: arrow refused {e}");
                continue;
            }
        };
        let array: ArrayRef = Arc::new(list);
        let field = Arc::new(Field::new("v", array.data_type().clone(), false));
        let col = TensorColumn::try_new(field, array);
        eprintln!("rows {rows}: column {:?}", col.as_ref().map(|c| c.kind()));
        let col = col.unwrap();
        let host = col.to_host();
        eprintln!("  to_host {:?}", host.as_ref().map(|h| h.shape().to_vec()));
        if let Ok(host) = host {
            let v = host.view::<f32>();
            eprintln!("  view {:?}", v.map(|v| v.shape().to_vec()));
        }
    }
}

/// F6: concat_rows of parts whose rows sum past isize::MAX with zero elements.
#[test]
fn a7b_concat_rows_zero_width_rows_past_isize_max() {
    let part = HostArray::from_vec(vec![isize::MAX as usize, 0], Vec::<f32>::new()).unwrap();
    let joined = HostArray::concat_rows(&[part.clone(), part]);
    eprintln!("joined: {:?}", joined.map(|j| j.shape().to_vec()));
}

/// F6b: the same through a stream of zero-width FixedSizeList batches and read_column_combined.
#[test]
fn a7b_combined_zero_width_stream_past_isize_max() {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let make = || -> ArrayRef {
        Arc::new(
            FixedSizeListArray::try_new_with_length(
                item.clone(),
                0,
                Arc::new(Float32Array::from(Vec::<f32>::new())),
                None,
                isize::MAX as usize,
            )
            .unwrap(),
        )
    };
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        make().data_type().clone(),
        false,
    )]));
    let batches: Vec<_> = (0..2)
        .map(|_| Ok(RecordBatch::try_new(schema.clone(), vec![make()]).unwrap()))
        .collect();
    let r = RecordBatchIterator::new(batches, schema.clone());
    let imported = ffi::import_stream(ffi::export_stream(r).unwrap()).unwrap();
    let joined = TensorReader::new(imported).read_column_combined("v");
    eprintln!("joined: {:?}", joined.map(|j| j.shape().to_vec()));
}

/// split_struct with a struct field and a non-struct array (safe inputs).
#[test]
fn a7b_split_struct_mismatched_array() {
    let field = Field::new(
        "s",
        DataType::Struct(vec![Field::new("a", DataType::Float32, false)].into()),
        false,
    );
    let array: ArrayRef = Arc::new(Float32Array::from(vec![1.0f32]));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ffi::split_struct(&field, &array).map(|c| c.len())));
    eprintln!("split_struct: {:?}", r.map_err(|_| "PANIC"));
}

/// A reader whose schema says Int64 but whose batches hold Int8 (RecordBatchReader is a safe
/// trait: nothing but its docs ties the batches to schema()).
struct Lying {
    told: SchemaRef,
    batch: Option<RecordBatch>,
}
impl Iterator for Lying {
    type Item = Result<RecordBatch, ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.batch.take().map(Ok)
    }
}
impl RecordBatchReader for Lying {
    fn schema(&self) -> SchemaRef {
        self.told.clone()
    }
}

/// F7: safe code only: arrow-rs's safe FFI_ArrowArrayStream::new (re-exported by ferry) over a
/// reader whose batches do not match its schema, then ferry's import_stream: the Int8 buffer
/// of 1000 bytes is read as 1000 Int64 values (8000 bytes).
#[test]
fn a7b_safe_stream_new_lying_reader_reads_out_of_bounds() {
    use ferry::arrow::arrow_array::Int8Array;
    let rows = 1000;
    let real = Arc::new(Schema::new(vec![Field::new("x", DataType::Int8, false)]));
    let told = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        real,
        vec![Arc::new(Int8Array::from(vec![1i8; rows]))],
    )
    .unwrap();
    let stream = ffi::FFI_ArrowArrayStream::new(Box::new(Lying {
        told,
        batch: Some(batch),
    }));
    let imported = ffi::import_stream(stream).unwrap();
    let x = TensorReader::new(imported).read_column_combined("x").unwrap();
    let sum: i64 = x.view::<i64>().unwrap().iter().fold(0i64, |a, &b| a.wrapping_add(b));
    eprintln!("shape {:?}, sum of the 'Int64' values {sum}", x.shape());
}

/// F8: safe code only: arrow-rs's safe FFI_ArrowArrayStream::new over a reader whose error holds
/// a NUL, read through ferry's import_stream: arrow-rs's extern "C" get_next panics: abort.
#[test]
fn a7b_safe_stream_new_nul_error_aborts_in_import() {
    let r = reader(vec![Err(ArrowError::ComputeError("a\0b".into()))]);
    let stream = ffi::FFI_ArrowArrayStream::new(Box::new(r));
    let mut imported = ffi::import_stream(stream).unwrap();
    let next = imported.next();
    eprintln!("survived: {:?}", next.map(|r| r.map(|_| ())));
}

/// NUL in a field name or metadata, exported.
#[test]
fn a7b_export_stream_nul_in_field_name() {
    let schema = Arc::new(Schema::new(vec![Field::new("a\0b", DataType::Float32, false)]));
    let r = RecordBatchIterator::new(Vec::new(), schema);
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ffi::export_stream(r).map(|_| ())
    }));
    eprintln!("export_stream: {:?}", res.map_err(|_| "PANIC"));
}

/// F9: through ferry's guarded export_stream (safe code only): RecordBatch::try_new compares a
/// column's type to its field with `equals_datatype`, which lets a Union's fields come in
/// another order; Guarded compares batch.schema() (the same Arc) and passes it; the consumer
/// reads children by the schema's order: the Int8 child of N bytes is read as N Int64s.
#[test]
fn a7b_export_stream_union_field_order_reads_out_of_bounds() {
    use ferry::arrow::arrow_array::{Int8Array, Int64Array, UnionArray, cast::AsArray, types::Int64Type};
    use ferry::arrow::arrow_schema::{UnionFields, UnionMode};
    let n = 1000;
    let column_fields = UnionFields::try_new(
        vec![0i8, 1],
        vec![
            Field::new("small", DataType::Int8, false),
            Field::new("big", DataType::Int64, false),
        ],
    )
    .unwrap();
    let schema_fields = UnionFields::try_new(
        vec![1i8, 0],
        vec![
            Field::new("big", DataType::Int64, false),
            Field::new("small", DataType::Int8, false),
        ],
    )
    .unwrap();
    let union = UnionArray::try_new(
        column_fields,
        vec![0i8; n].into(),
        None,
        vec![
            Arc::new(Int8Array::from(vec![1i8; n])),
            Arc::new(Int64Array::from(vec![2i64; n])),
        ],
    )
    .unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "u",
        DataType::Union(schema_fields, UnionMode::Sparse),
        false,
    )]));
    let batch = RecordBatch::try_new_with_options(
        schema.clone(),
        vec![Arc::new(union)],
        &RecordBatchOptions::new().with_match_field_names(false),
    )
    .unwrap();
    let r = RecordBatchIterator::new(vec![Ok(batch)], schema);
    let imported = ffi::import_stream(ffi::export_stream(r).unwrap()).unwrap();
    for batch in imported {
        let batch = batch.unwrap();
        let u = batch.column(0).as_union();
        let big = u.child(1).as_primitive::<Int64Type>();
        let sum = big.values().iter().fold(0i64, |a, &b| a.wrapping_add(b));
        eprintln!("child 'big' (type id 1): len {}, sum {sum} (2*n = {})", big.len(), 2 * n);
    }
}
