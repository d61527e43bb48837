//! The Arrow bridge: host arrays ↔ Arrow arrays and tensor columns for every layout the suite
//! knows, refusals, variable-shape columns, and real consumers — pyarrow reading ferry's IPC and
//! Parquet files (and ferry reading pyarrow's), DataFusion and Ray Data running over a
//! partitioned dataset ferry wrote from candle, Burn and tch tensors.

use std::path::Path;

use ferry::arrow::{
    ColumnKind, DatasetWriter, Error as ArrowError, FileFormat, TensorColumn, TensorWriter,
    arrow_type, column, from_arrow, ipc, parquet, record_batch, to_arrow,
};
use ferry::{CopyReason, DType, HostArray, copy_totals};
use ferry_tests::fixtures::{Layout, layouts, reference_values, strided_array};
use ferry_tests::suite::{assert_same, fixture};

/// Every dtype both ferry and Arrow have.
fn arrow_dtypes() -> impl Iterator<Item = DType> {
    DType::TYPED.into_iter().filter(|&d| arrow_type(d).is_ok())
}

/// Whether a fixture layout's rows are contiguous blocks of a row-major buffer (what a column
/// shares without copying).
fn shares(layout: &Layout) -> bool {
    matches!(layout.name, "contiguous" | "empty")
}

#[test]
fn every_suite_layout_round_trips_sharing_memory_where_arrow_can_hold_it() {
    for layout in layouts() {
        let (buffer, host) = strided_array::<f32>(&layout);
        let ctx = layout.name;
        if layout.shape.is_empty() {
            let err = TensorColumn::from_batch("x", &host).unwrap_err();
            assert!(matches!(err, ArrowError::Shape { .. }), "{ctx}: {err}");
            assert!(err.to_string().contains("reshape"), "{ctx}: {err}");
            continue;
        }
        let before = copy_totals();
        let col = TensorColumn::from_batch("x", &host).unwrap();
        let copies = copy_totals().since(before).copies;
        let back = col.to_host().unwrap();
        assert_eq!(back.shape(), host.shape(), "{ctx}");
        assert_eq!(
            back.to_array::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            reference_values(&buffer, &layout),
            "{ctx}: values"
        );
        assert!(back.is_read_only(), "{ctx}: Arrow's memory is read-only");
        if shares(&layout) {
            assert_eq!(copies, 0, "{ctx}");
            assert!(col.copy_log().is_empty(), "{ctx}");
            if !host.is_empty() {
                assert_eq!(back.as_ptr(), host.as_ptr(), "{ctx}: same memory");
            }
        } else {
            assert_eq!(copies, 1, "{ctx}: one copy");
            assert_eq!(col.copy_log()[0].reason, CopyReason::NonContiguous, "{ctx}");
            assert_eq!(col.copy_log()[0].bytes, host.nbytes() as u64, "{ctx}");
        }
        assert_eq!(
            back.copies(),
            0,
            "{ctx}: reading Arrow's buffer copies nothing"
        );
    }
}

#[test]
fn permuted_batches_travel_through_the_permutation_without_copying() {
    // rows × C × H × W, stored rows × H × W × C (NHWC memory, NCHW view): rows outermost.
    let nhwc = fixture(DType::F32, &[3, 4, 5, 2])
        .to_array::<f32>()
        .unwrap();
    let nchw = HostArray::from_array(nhwc.permuted_axes(vec![0, 3, 1, 2]));
    let before = copy_totals();
    let col = TensorColumn::from_batch("images", &nchw).unwrap();
    assert_eq!(copy_totals().since(before).copies, 0);
    assert_eq!(col.kind(), ColumnKind::FixedShapeTensor);
    let metadata = col.field().extension_type_metadata().unwrap();
    assert!(metadata.contains(r#""shape":[4,5,2]"#), "{metadata}");
    assert!(metadata.contains(r#""permutation":[2,0,1]"#), "{metadata}");
    assert_eq!(col.tensor_shape().unwrap(), Some(vec![2, 4, 5]));
    let back = col.to_host().unwrap();
    assert_eq!(back.as_ptr(), nchw.as_ptr());
    assert_eq!(back.strides(), nchw.strides());
    assert_same(&back, &nchw, "nchw");
    // One tensor per row, each over the same buffer.
    let rows = col.to_host_tensors().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].shape(), &[2, 4, 5]);
    assert_eq!(rows[1].as_ptr(), nchw.as_ptr().wrapping_add(40 * 4));
    // Names are given in logical order and stored in physical order.
    let named = col.with_dim_names(&["C", "H", "W"]).unwrap();
    assert_eq!(
        named.dim_names().unwrap(),
        Some(vec!["C".into(), "H".into(), "W".into()])
    );
    let stored = named.field().extension_type_metadata().unwrap();
    assert!(stored.contains(r#""dim_names":["H","W","C"]"#), "{stored}");
}

#[test]
fn every_shared_dtype_round_trips_as_a_primitive_array_without_copying() {
    for dtype in arrow_dtypes() {
        let host = fixture(dtype, &[7]);
        let before = copy_totals();
        let arrow = to_arrow(&host).unwrap();
        let back = from_arrow(arrow.as_ref()).unwrap();
        let copies = copy_totals().since(before).copies;
        assert_same(&back, &host, &format!("{dtype}"));
        if dtype == DType::Bool {
            // Arrow packs bools into bits: one copy out, one back.
            assert_eq!(copies, 2, "{dtype}");
            assert_eq!(back.copy_log()[0].reason, CopyReason::Repacked);
        } else {
            assert_eq!(copies, 0, "{dtype}");
            assert_eq!(back.as_ptr(), host.as_ptr(), "{dtype}: same memory");
        }
    }
}

#[test]
fn arrow_keeps_ferry_memory_alive_and_ferry_keeps_arrow_memory_alive() {
    let host = fixture(DType::I64, &[5]);
    let ptr = host.as_ptr();
    let arrow = to_arrow(&host).unwrap();
    drop(host);
    // The Arrow array still reads the values: its buffer holds the array's owner.
    let values = arrow
        .as_any()
        .downcast_ref::<ferry::arrow::arrow_array::Int64Array>()
        .unwrap();
    assert_eq!(values.values().as_ref(), &[0, 1, 2, 3, 4]);
    let back = from_arrow(arrow.as_ref()).unwrap();
    drop(arrow);
    assert_eq!(back.as_ptr(), ptr);
    assert_eq!(back.view1::<i64>().unwrap().to_vec(), vec![0, 1, 2, 3, 4]);
}

#[test]
fn an_exported_array_cannot_be_written_while_arrow_holds_it() {
    let mut host = fixture(DType::F32, &[4]);
    let arrow = to_arrow(&host).unwrap();
    assert!(host.view_mut::<f32>().is_err(), "Arrow shares the memory");
    drop(arrow);
    host.view_mut::<f32>().unwrap()[0] = 9.0;
}

#[test]
fn dtypes_arrow_lacks_nulls_and_bad_metadata_are_typed_errors() {
    for (dtype, hint) in [
        (DType::BF16, "cast it to f32"),
        (DType::C64, "real and imaginary"),
        (DType::C128, "real and imaginary"),
    ] {
        let err = TensorColumn::from_batch("x", &fixture(dtype, &[2, 2])).unwrap_err();
        assert!(
            matches!(err, ArrowError::UnsupportedDtype { dtype: d, .. } if d == dtype),
            "{err}"
        );
        assert!(err.to_string().contains(hint), "{err}");
    }
    let raw = HostArray::from_bytes(
        vec![2],
        DType::Raw(ferry::raw_dtypes::FLOAT8_E4M3FN),
        &[1, 2],
    )
    .unwrap();
    assert!(matches!(
        to_arrow(&raw),
        Err(ArrowError::UnsupportedDtype { .. })
    ));

    use ferry::arrow::arrow_array::{Float32Array, StringArray};
    let nulls = Float32Array::from(vec![Some(1.0), None]);
    let err = from_arrow(&nulls).unwrap_err();
    assert!(matches!(err, ArrowError::Nulls { nulls: 1, .. }), "{err}");
    assert!(err.to_string().contains("fill_null"), "{err}");
    let strings = StringArray::from(vec!["a"]);
    assert!(matches!(
        from_arrow(&strings),
        Err(ArrowError::UnsupportedArrowType { .. })
    ));

    // A fixed-shape column whose metadata contradicts its storage.
    let col = TensorColumn::from_batch("t", &fixture(DType::F32, &[2, 3])).unwrap();
    for bad in [
        r#"{"shape":[4]}"#,
        r#"{"shape":[3],"permutation":[1]}"#,
        r#"{"shape":[3],"dim_names":["a","b"]}"#,
        r#"not json"#,
    ] {
        let mut metadata = col.field().metadata().clone();
        metadata.insert("ARROW:extension:metadata", bad);
        let field = (**col.field()).clone().with_metadata(metadata);
        let err = TensorColumn::try_new(field.into(), col.array().clone()).unwrap_err();
        assert!(
            matches!(err, ArrowError::InvalidExtension { .. }),
            "{bad}: {err}"
        );
    }
    assert!(matches!(
        col.clone().with_dim_names(&["a", "b"]),
        Err(ArrowError::InvalidExtension { .. })
    ));
    let batch = record_batch([col]).unwrap();
    assert!(matches!(
        column(&batch, "nope"),
        Err(ArrowError::NoSuchColumn { .. })
    ));
}

#[test]
fn ragged_tensors_become_a_variable_shape_column_read_back_without_copying() {
    let tensors: Vec<HostArray> = [[2, 3], [1, 4], [3, 1]]
        .iter()
        .map(|s| fixture(DType::I32, s))
        .collect();
    let col = TensorColumn::from_tensors("ragged", &tensors).unwrap();
    assert_eq!(col.kind(), ColumnKind::VariableShapeTensor);
    assert_eq!(col.copy_log().len(), 1, "one copy into the data buffer");
    assert_eq!(col.tensor_shape().unwrap(), None);
    assert!(matches!(col.to_host(), Err(ArrowError::Shape { .. })));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ragged.arrow");
    ipc::write_file(&path, &[record_batch([col.clone()]).unwrap()]).unwrap();
    for source in [
        col,
        column(&ipc::read_file(&path).unwrap()[0], "ragged").unwrap(),
    ] {
        let before = copy_totals();
        let back = source.to_host_tensors().unwrap();
        assert_eq!(copy_totals().since(before).copies, 0);
        for (b, t) in back.iter().zip(&tensors) {
            assert_same(b, t, "ragged");
        }
        // All rows over one buffer, one after the other.
        assert_eq!(back[1].as_ptr(), back[0].as_ptr().wrapping_add(6 * 4));
    }
    // Same shapes make a fixed-shape column (stacked: one copy).
    let same: Vec<HostArray> = (0..3).map(|_| fixture(DType::U16, &[2, 2])).collect();
    let col = TensorColumn::from_tensors("same", &same).unwrap();
    assert_eq!(col.kind(), ColumnKind::FixedShapeTensor);
    assert_eq!(col.to_host().unwrap().shape(), &[3, 2, 2]);
    assert!(matches!(
        TensorColumn::from_tensors("none", &[]),
        Err(ArrowError::Shape { .. })
    ));
}

#[test]
fn bool_tensor_columns_are_bit_packed_once_each_way() {
    let host = HostArray::from_vec(vec![3, 2, 2], (0..12).map(|i| i % 3 == 0).collect()).unwrap();
    let col = TensorColumn::from_batch("mask", &host).unwrap();
    assert_eq!(col.copy_log().len(), 1);
    assert_eq!(col.copy_log()[0].reason, CopyReason::Repacked);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mask.parquet");
    parquet::write_file(&path, &[record_batch([col]).unwrap()]).unwrap();
    let back = column(&parquet::read_file(&path).unwrap()[0], "mask")
        .unwrap()
        .to_host()
        .unwrap();
    assert_eq!(back.copy_log()[0].reason, CopyReason::Repacked);
    assert_same(&back, &host, "bool");
}

#[test]
fn the_tensor_writer_appends_batches_and_the_files_read_back() {
    let dir = tempfile::tempdir().unwrap();
    for format in [
        FileFormat::Parquet,
        FileFormat::IpcFile,
        FileFormat::IpcStream,
    ] {
        let path = dir.path().join(format!("stream.{}", format.extension()));
        let batch = |i: usize| {
            let x = fixture(DType::F64, &[10, 3]).cast_to(DType::F64).unwrap();
            let id = HostArray::from_vec(vec![10], (0..10).map(|r| (i * 10 + r) as i64).collect())
                .unwrap();
            record_batch([
                TensorColumn::from_batch("x", &x).unwrap(),
                TensorColumn::from_batch("id", &id).unwrap(),
            ])
            .unwrap()
        };
        let first = batch(0);
        let mut writer = TensorWriter::create(&path, format, first.schema())
            .unwrap()
            .with_row_group_bytes(64);
        for i in 0..5 {
            writer.write(&batch(i)).unwrap();
        }
        // A batch of another schema is refused.
        let other =
            record_batch([TensorColumn::from_batch("y", &fixture(DType::F32, &[2])).unwrap()])
                .unwrap();
        assert!(writer.write(&other).is_err());
        if format == FileFormat::Parquet {
            // 64-byte row groups: the writer wrote them out as it went.
            assert!(writer.row_groups() >= 4, "{}", writer.row_groups());
        }
        assert_eq!(writer.finish().unwrap(), 50);
        let batches = match format {
            FileFormat::Parquet => parquet::read_file(&path).unwrap(),
            FileFormat::IpcFile => ipc::read_file(&path).unwrap(),
            _ => ipc::read_stream(std::fs::File::open(&path).unwrap()).unwrap(),
        };
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                column(b, "id")
                    .unwrap()
                    .to_host()
                    .unwrap()
                    .to_array::<i64>()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, (0..50).collect::<Vec<_>>(), "{format:?}");
    }
}

#[test]
fn partition_names_that_are_not_plain_folder_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let batch =
        record_batch([TensorColumn::from_batch("x", &fixture(DType::F32, &[2])).unwrap()]).unwrap();
    assert!(DatasetWriter::create(dir.path(), "a/b", FileFormat::Parquet, batch.schema()).is_err());
    let mut writer =
        DatasetWriter::create(dir.path(), "part", FileFormat::Parquet, batch.schema()).unwrap();
    for bad in ["", "..", "x/y", "k=v", ".hidden", "_tmp"] {
        assert!(writer.write(bad, &batch).is_err(), "{bad:?}");
    }
    writer.write("ok", &batch).unwrap();
    let files = writer.finish().unwrap();
    assert_eq!(files, vec![dir.path().join("part=ok/part-0.parquet")]);
}

/// The provisioned Python interpreter (beside the site-packages `FERRY_PYTHON_SITE` names, or
/// in the default cache).
#[cfg(feature = "python")]
fn python_executable() -> std::path::PathBuf {
    let site = std::env::var_os("FERRY_PYTHON_SITE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME");
            Path::new(&home).join(".cache/ferry/libtorch-2.9.0/venv/lib/python3.11/site-packages")
        });
    // <venv>/lib/pythonX.Y/site-packages → <venv>/bin/python
    let python = site.join("../../../bin/python");
    assert!(
        python.exists(),
        "no Python beside {}: run `cargo xtask ci`, which provisions it",
        site.display()
    );
    python
}

#[cfg(feature = "python")]
mod consumers {
    use super::*;
    use crate::python::with_python;
    use ferry_tests::backends::SuiteBackend;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyDict};

    /// The NumPy name of a dtype.
    fn numpy_name(dtype: DType) -> &'static str {
        match dtype {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            other => panic!("{other} has no Arrow type"),
        }
    }

    /// Columns of `B`'s tensors: for every dtype Arrow has, a contiguous [4, 2, 3] batch and
    /// its transpose ([4, 3, 2], a permuted view); with the framework's own read-back of each.
    fn framework_columns<B: SuiteBackend>() -> Vec<(String, TensorColumn, HostArray)> {
        let mut out = Vec::new();
        for &dtype in B::DTYPES.iter().filter(|&&d| arrow_type(d).is_ok()) {
            // Each view the only handle on its memory (tch copies a storage others share).
            let base = || B::from_host(&fixture(dtype, &[4, 2, 3]), &B::cpu()).unwrap();
            // (A statement of its own: its temporaries, the bases, are dropped at its end.)
            let views = [
                ("contiguous", B::narrow(&base(), 0, 0, 4)),
                ("permuted", B::transpose(&base())),
            ];
            for (layout, view) in views {
                let name = format!("{}_{dtype}_{layout}", B::NAME.replace(['(', ')', ' '], ""));
                let host = B::to_host(&view).unwrap();
                let col = TensorColumn::from_batch(&name, &host).unwrap();
                if dtype != DType::Bool {
                    assert!(col.copy_log().is_empty(), "{name}: exported in place");
                }
                out.push((name, col, B::read_back(&view).unwrap()));
            }
        }
        out
    }

    const PYARROW_READS: &str = r#"
import numpy as np, pyarrow as pa, pyarrow.ipc, pyarrow.parquet as pq
tables = {
    "ipc file": pa.ipc.open_file(ipc_file).read_all(),
    "ipc stream": pa.ipc.open_stream(ipc_stream).read_all(),
    "parquet": pq.read_table(parquet_file),
}
checked = 0
for source, table in tables.items():
    for name, (dtype, shape, data, permuted) in expected.items():
        col = table.column(name).combine_chunks()
        assert isinstance(col, pa.FixedShapeTensorArray), (source, name, col.type)
        assert (col.type.permutation is not None) == permuted, (source, name, col.type)
        if dtype == "bool":
            nd = np.array(col.storage.flatten().to_pylist(), dtype=bool).reshape(shape)
        else:
            nd = col.to_numpy_ndarray()
        assert str(nd.dtype) == dtype, (source, name, nd.dtype)
        assert nd.shape == tuple(shape), (source, name, nd.shape, shape)
        assert np.ascontiguousarray(nd).tobytes() == data, (source, name)
        checked += 1
"#;

    #[test]
    fn pyarrow_reads_ferrys_ipc_and_parquet_files_of_every_backend_bit_for_bit() {
        let mut columns = Vec::new();
        #[cfg(feature = "candle")]
        columns.extend(framework_columns::<ferry::Candle>());
        #[cfg(feature = "burn")]
        {
            use ferry::burn_adapter::burn_kinds::{Bool, Float, Int};
            columns.extend(framework_columns::<ferry::Burn<3, Float>>());
            columns.extend(framework_columns::<ferry::Burn<3, Int>>());
            columns.extend(framework_columns::<ferry::Burn<3, Bool>>());
        }
        #[cfg(feature = "tch")]
        columns.extend(framework_columns::<ferry::Tch>());
        let dir = tempfile::tempdir().unwrap();
        let batch = record_batch(columns.iter().map(|(_, c, _)| c.clone())).unwrap();
        let ipc_file = dir.path().join("all.arrow");
        let ipc_stream = dir.path().join("all.arrows");
        let parquet_file = dir.path().join("all.parquet");
        ipc::write_file(&ipc_file, std::slice::from_ref(&batch)).unwrap();
        std::fs::write(
            &ipc_stream,
            ipc::write_stream(Vec::new(), std::slice::from_ref(&batch)).unwrap(),
        )
        .unwrap();
        parquet::write_file(&parquet_file, &[batch]).unwrap();
        let checked: usize = with_python(|py| {
            let expected = PyDict::new(py);
            for (name, _, read_back) in &columns {
                let bytes = read_back.as_bytes().unwrap_or_default();
                expected.set_item(
                    name,
                    (
                        numpy_name(read_back.dtype()),
                        read_back.shape().to_vec(),
                        PyBytes::new(py, bytes),
                        name.ends_with("permuted") && read_back.dtype() != DType::Bool,
                    ),
                )?;
            }
            let locals = PyDict::new(py);
            locals.set_item("expected", expected)?;
            locals.set_item("ipc_file", &ipc_file)?;
            locals.set_item("ipc_stream", &ipc_stream)?;
            locals.set_item("parquet_file", &parquet_file)?;
            py.run(&std::ffi::CString::new(PYARROW_READS)?, None, Some(&locals))?;
            locals.get_item("checked")?.unwrap().extract()
        });
        assert_eq!(checked, 3 * columns.len());
        assert!(columns.len() >= 20, "{} columns", columns.len());
    }

    const PYARROW_WRITES: &str = r#"
import numpy as np, pyarrow as pa, pyarrow.ipc, pyarrow.parquet as pq
# Two 3x4 tensors in physical (row-major) order, seen logically as 4x3 through permutation.
physical = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
typ = pa.fixed_shape_tensor(pa.int16(), [3, 4], dim_names=["H", "W"], permutation=[1, 0])
storage = pa.FixedSizeListArray.from_arrays(pa.array(physical.ravel()), 12)
tensors = pa.ExtensionArray.from_storage(typ, storage)
table = pa.table({"t": tensors, "x": pa.array([1.5, 2.5])})
pq.write_table(table, parquet_file)
with pa.ipc.new_file(ipc_file, table.schema) as w:
    w.write_table(table)
logical = tensors.to_numpy_ndarray()
expected = (list(logical.shape), np.ascontiguousarray(logical).tobytes())
"#;

    #[test]
    fn ferry_reads_pyarrows_files_with_permutation_and_dim_names() {
        let dir = tempfile::tempdir().unwrap();
        let ipc_file = dir.path().join("py.arrow");
        let parquet_file = dir.path().join("py.parquet");
        let (shape, bytes): (Vec<usize>, Vec<u8>) = with_python(|py| {
            let locals = PyDict::new(py);
            locals.set_item("ipc_file", &ipc_file)?;
            locals.set_item("parquet_file", &parquet_file)?;
            py.run(
                &std::ffi::CString::new(PYARROW_WRITES)?,
                None,
                Some(&locals),
            )?;
            locals.get_item("expected")?.unwrap().extract()
        });
        let expected = HostArray::from_bytes(shape, DType::I16, &bytes).unwrap();
        assert_eq!(expected.shape(), &[2, 4, 3]);
        for batches in [
            ipc::read_file(&ipc_file).unwrap(),
            parquet::read_file(&parquet_file).unwrap(),
        ] {
            let t = column(&batches[0], "t").unwrap();
            assert_eq!(t.dim_names().unwrap(), Some(vec!["W".into(), "H".into()]));
            let before = copy_totals();
            let host = t.to_host().unwrap();
            assert_eq!(copy_totals().since(before).copies, 0);
            assert!(!host.is_standard_layout(), "read through the permutation");
            assert_same(&host, &expected, "pyarrow's tensors");
            let x = column(&batches[0], "x").unwrap().to_host().unwrap();
            assert_eq!(x.view1::<f64>().unwrap().to_vec(), vec![1.5, 2.5]);
        }
    }

    /// What one backend contributes to the engines' dataset, and what ferry computes of it.
    struct Partition {
        key: &'static str,
        embeddings: HostArray,
    }

    fn partition<B: SuiteBackend>(key: &'static str, rows: usize) -> Partition {
        let values = HostArray::from_vec(
            vec![rows, 4, 8],
            (0..rows * 32)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect(),
        )
        .unwrap();
        let tensor = B::from_host(&values, &B::cpu()).unwrap();
        Partition {
            key,
            embeddings: B::to_host(&tensor).unwrap(),
        }
    }

    /// An empty string column that pyarrow made without an offsets buffer, read back from an
    /// IPC file, goes to Parquet: the writer sizes its slices from the column types and reads
    /// no column data (audit round 6 feared arrow's slice sizes would index such offsets).
    #[test]
    fn round6_an_empty_column_without_offsets_writes_to_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let arrow_file = dir.path().join("empty.arrow");
        let script = format!(
            "import pyarrow as pa\n\
             s = pa.Array.from_buffers(pa.string(), 0, [None, None, pa.py_buffer(b'')])\n\
             b = pa.RecordBatch.from_arrays([s], ['s'])\n\
             with pa.ipc.new_file({:?}, b.schema) as w: w.write_batch(b)\n",
            arrow_file.to_str().unwrap()
        );
        let out = std::process::Command::new(python_executable())
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let batches = ipc::read_file(&arrow_file).unwrap();
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 0);
        let path = dir.path().join("empty.parquet");
        let mut writer = TensorWriter::create(&path, FileFormat::Parquet, batch.schema()).unwrap();
        writer.write(batch).unwrap();
        writer.finish().unwrap();
        let back = parquet::read_file(&path).unwrap();
        assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    #[test]
    #[allow(clippy::vec_init_then_push)] // one push per enabled backend
    fn readers_and_engines_open_a_partitioned_dataset_plainly_and_answer_as_ferry_does() {
        let mut parts = Vec::new();
        #[cfg(feature = "candle")]
        parts.push(partition::<ferry::Candle>("candle", 24));
        #[cfg(feature = "burn")]
        parts.push(partition::<
            ferry::Burn<3, ferry::burn_adapter::burn_kinds::Float>,
        >("burn", 16));
        #[cfg(feature = "tch")]
        parts.push(partition::<ferry::Tch>("tch", 8));
        let dir = tempfile::tempdir().unwrap();
        // The dataset root holds only partitions; ferry's answers go beside it.
        let root = dir.path().join("dataset");
        let expected_json = dir.path().join("expected.json");
        let mut writer = None;
        let mut expected = Vec::new();
        for p in &parts {
            let view = p.embeddings.view::<f32>().unwrap();
            let rows = view.outer_iter();
            let norms: Vec<f64> = rows
                .clone()
                .map(|r| {
                    r.iter()
                        .map(|&v| f64::from(v) * f64::from(v))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            let sum: f64 = view.iter().map(|&v| f64::from(v)).sum();
            let mean = norms.iter().sum::<f64>() / norms.len() as f64;
            expected.push(format!(
                r#""{}": {{"rows": {}, "mean_norm": {mean:?}, "embedding_sum": {sum:?}}}"#,
                p.key,
                norms.len()
            ));
            let batch = record_batch([
                TensorColumn::from_batch("embedding", &p.embeddings).unwrap(),
                TensorColumn::from_batch(
                    "norm",
                    &HostArray::from_vec(vec![norms.len()], norms).unwrap(),
                )
                .unwrap(),
            ])
            .unwrap();
            writer
                .get_or_insert_with(|| {
                    DatasetWriter::create(&root, "backend", FileFormat::Parquet, batch.schema())
                        .unwrap()
                })
                .write(p.key, &batch)
                .unwrap();
        }
        writer.unwrap().finish().unwrap();
        std::fs::write(
            &expected_json,
            format!(
                r#"{{"embedding_shape": [4, 8], "backends": {{{}}}}}"#,
                expected.join(", ")
            ),
        )
        .unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/ferry/examples/arrow_engines.py");
        let out = std::process::Command::new(python_executable())
            .arg(&script)
            .arg(&root)
            .arg(&expected_json)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!("KEEP {:?}", dir.keep());
        }
        assert!(
            out.status.success(),
            "arrow_engines.py failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for p in &parts {
            for reader in [
                "pyarrow.dataset",
                "duckdb",
                "polars",
                "datafusion",
                "ray data",
            ] {
                let line = format!("{:<16}backend={}", format!("{reader}:"), p.key);
                assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
            }
        }
        assert!(
            stdout
                .contains("readers: pyarrow.dataset's, DuckDB's and Polars' answers equal ferry's"),
            "{stdout}"
        );
        assert!(
            stdout.contains("engines: DataFusion's and Ray Data's answers equal ferry's"),
            "{stdout}"
        );
    }
}

#[test]
fn misaligned_memory_is_copied_once_for_arrows_aligned_buffers() {
    let bytes: Vec<u8> = (0..17).collect();
    let base = bytes.as_ptr();
    let parts = ferry::RawParts {
        data: base.wrapping_add(1),
        dtype: DType::F32,
        shape: vec![2, 2],
        strides: vec![2, 1],
        memory: ferry::MemoryKind::Cpu,
        access: ferry::Access::ReadOnly,
    };
    // SAFETY: the 16 bytes from `base + 1` lie in `bytes`, which the owner keeps alive and
    // nobody writes.
    let host = unsafe { HostArray::from_raw_parts(parts, std::sync::Arc::new(bytes)) }.unwrap();
    let col = TensorColumn::from_batch("x", &host).unwrap();
    assert_eq!(col.copy_log().len(), 1);
    assert_eq!(col.copy_log()[0].reason, CopyReason::Misaligned);
    let back = col.to_host().unwrap();
    assert_eq!(back.as_bytes().unwrap(), &(1..17).collect::<Vec<u8>>()[..]);
}

/// Three batches of a 2×3 f32 tensor column `x` (rows 0–1, 2–3, 4–5) and an `id` column.
fn three_batches() -> Vec<ferry::arrow::arrow_array::RecordBatch> {
    (0..3)
        .map(|b| {
            let x = HostArray::from_vec(
                vec![2, 2, 3],
                (0..12).map(|i| (b * 12 + i) as f32).collect(),
            )
            .unwrap();
            let id = HostArray::from_vec(vec![2], vec![2 * b as i64, 2 * b as i64 + 1]).unwrap();
            record_batch([
                TensorColumn::from_batch("x", &x).unwrap(),
                TensorColumn::from_batch("id", &id).unwrap(),
            ])
            .unwrap()
        })
        .collect()
}

fn reader_of(
    batches: Vec<ferry::arrow::arrow_array::RecordBatch>,
) -> ferry::arrow::arrow_array::RecordBatchIterator<
    std::vec::IntoIter<
        Result<ferry::arrow::arrow_array::RecordBatch, ferry::arrow::arrow_schema::ArrowError>,
    >,
> {
    let schema = batches[0].schema();
    ferry::arrow::arrow_array::RecordBatchIterator::new(
        batches.into_iter().map(Ok).collect::<Vec<_>>().into_iter(),
        schema,
    )
}

#[test]
fn tensor_reader_reads_a_column_per_batch_sharing_memory_and_joined_with_one_copy() {
    use ferry::arrow::TensorReader;
    let batches = three_batches();
    let addresses: Vec<*const u8> = batches
        .iter()
        .map(|b| column(b, "x").unwrap().to_host().unwrap().as_ptr())
        .collect();
    let chunks = TensorReader::new(reader_of(batches.clone()))
        .read_column("x")
        .unwrap();
    assert_eq!(chunks.len(), 3);
    for (chunk, address) in chunks.iter().zip(&addresses) {
        let host = chunk.to_host().unwrap();
        assert_eq!(host.copies(), 0);
        assert_eq!(host.as_ptr(), *address);
    }
    let joined = TensorReader::new(reader_of(batches.clone()))
        .read_column_combined("x")
        .unwrap();
    assert_eq!(joined.shape(), &[6, 2, 3]);
    let expected: Vec<f32> = (0..36).map(|i| i as f32).collect();
    assert_eq!(
        joined
            .view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(joined.copy_log().len(), 1);
    assert_eq!(joined.copy_log()[0].reason, CopyReason::Concatenated);
    assert_eq!(joined.copy_log()[0].bytes, 36 * 4);
    // Iterating gives every column of each batch.
    let per_batch: Vec<_> = TensorReader::new(reader_of(batches.clone()))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(per_batch.len(), 3);
    assert!(
        per_batch
            .iter()
            .all(|cols: &Vec<TensorColumn>| cols.len() == 2)
    );
    let err = TensorReader::new(reader_of(batches))
        .read_column("y")
        .unwrap_err();
    assert!(matches!(err, ArrowError::NoSuchColumn { .. }), "{err}");
}

#[test]
fn read_column_combined_of_no_batch_is_an_empty_array_of_the_columns_shape() {
    use ferry::arrow::TensorReader;
    let schema = three_batches()[0].schema();
    let reader = ferry::arrow::arrow_array::RecordBatchIterator::new(Vec::new(), schema);
    let empty = TensorReader::new(reader).read_column_combined("x").unwrap();
    assert_eq!(empty.shape(), &[0, 2, 3]);
    assert_eq!(empty.dtype(), DType::F32);
}

#[test]
fn a_stream_exported_over_the_c_interface_and_imported_back_keeps_its_batches_and_types() {
    use ferry::arrow::{TensorReader, ffi};
    let batches = three_batches();
    let address = column(&batches[1], "x")
        .unwrap()
        .to_host()
        .unwrap()
        .as_ptr();
    let stream = ffi::export_stream(reader_of(batches)).unwrap();
    // SAFETY: `export_stream`'s stream keeps the C stream interface (its batches are checked
    // against its schema).
    let imported = unsafe { ffi::import_stream(stream) }.unwrap();
    assert!(imported.is_record_batches());
    let chunks = TensorReader::new(imported).read_column("x").unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1].kind(), ColumnKind::FixedShapeTensor);
    // The consumer reads the producer's buffers: no copy across the interface.
    assert_eq!(chunks[1].to_host().unwrap().as_ptr(), address);
    assert_eq!(chunks[1].tensor_shape().unwrap(), Some(vec![2, 3]));
}

/// A reader that gives one batch, then fails (or panics) as told.
struct Failing {
    schema: ferry::arrow::arrow_schema::SchemaRef,
    batch: Option<ferry::arrow::arrow_array::RecordBatch>,
    panic: bool,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Iterator for Failing {
    type Item =
        Result<ferry::arrow::arrow_array::RecordBatch, ferry::arrow::arrow_schema::ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(batch) = self.batch.take() {
            return Some(Ok(batch));
        }
        if self.panic {
            panic!("the reader panicked");
        }
        Some(Err(ferry::arrow::arrow_schema::ArrowError::ComputeError(
            "bad\0batch".into(),
        )))
    }
}

impl ferry::arrow::arrow_array::RecordBatchReader for Failing {
    fn schema(&self) -> ferry::arrow::arrow_schema::SchemaRef {
        self.schema.clone()
    }
}

#[test]
fn a_failing_or_panicking_reader_behind_a_c_stream_is_an_error_then_the_end_never_an_abort() {
    use ferry::arrow::{TensorReader, ffi};
    for panic in [false, true] {
        let batch = three_batches().remove(0);
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reader = Failing {
            schema: batch.schema(),
            batch: Some(batch),
            panic,
            calls: calls.clone(),
        };
        let stream = ffi::export_stream(reader).unwrap();
        // SAFETY: `export_stream`'s stream keeps the C stream interface.
        let mut reader = TensorReader::new(unsafe { ffi::import_stream(stream) }.unwrap());
        assert!(reader.next_batch().unwrap().is_ok());
        let err = reader.next_batch().unwrap().unwrap_err().to_string();
        let expected = if panic { "panicked" } else { "bad\\0batch" };
        assert!(err.contains(expected), "{err}");
        // After an error the stream is only released: nothing more is asked of the producer.
        assert!(reader.next_batch().is_none());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}

#[test]
fn a_released_c_stream_is_refused_before_any_callback() {
    use ferry::arrow::ffi::{FFI_ArrowArrayStream, import_stream};
    // SAFETY: a released stream has no callback to call.
    let err = unsafe { import_stream(FFI_ArrowArrayStream::empty()) }.unwrap_err();
    assert!(matches!(err, ArrowError::Released { .. }), "{err}");
}

/// A `RecordBatchWriter` of this suite's own: keeps what it is given.
struct Collect(
    std::sync::Arc<std::sync::Mutex<(Vec<ferry::arrow::arrow_array::RecordBatch>, bool)>>,
);

impl ferry::arrow::arrow_array::RecordBatchWriter for Collect {
    fn write(
        &mut self,
        batch: &ferry::arrow::arrow_array::RecordBatch,
    ) -> Result<(), ferry::arrow::arrow_schema::ArrowError> {
        self.0.lock().unwrap().0.push(batch.clone());
        Ok(())
    }

    fn close(self) -> Result<(), ferry::arrow::arrow_schema::ArrowError> {
        self.0.lock().unwrap().1 = true;
        Ok(())
    }
}

#[test]
fn tensor_writer_writes_through_any_record_batch_writer_and_copies_a_reader() {
    use ferry::arrow::TensorReader;
    let batches = three_batches();
    let schema = batches[0].schema();
    let kept = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), false)));
    let mut writer = TensorWriter::new(Collect(kept.clone()), schema.clone());
    assert_eq!(writer.path(), None);
    assert_eq!(writer.write_all(reader_of(batches.clone())).unwrap(), 6);
    // A batch of another schema is refused, naming both.
    let other = record_batch([TensorColumn::from_batch(
        "z",
        &HostArray::from_vec(vec![1], vec![1u8]).unwrap(),
    )
    .unwrap()])
    .unwrap();
    let err = writer.write(&other).unwrap_err().to_string();
    assert!(err.contains("differs from the writer's"), "{err}");
    assert_eq!(writer.finish().unwrap(), 6);
    let (written, closed) = std::mem::take(&mut *kept.lock().unwrap());
    assert!(closed);
    assert_eq!(written.len(), 3);
    let x = TensorReader::new(reader_of(written))
        .read_column_combined("x")
        .unwrap();
    let expected: Vec<f32> = (0..36).map(|i| i as f32).collect();
    assert_eq!(
        x.view::<f32>().unwrap().iter().copied().collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn a_bare_fixed_size_list_of_numbers_reads_as_a_tensor_column() {
    use ferry::arrow::arrow_array::{FixedSizeListArray, Float32Array};
    use ferry::arrow::arrow_schema::{DataType, Field};
    use std::sync::Arc;
    let values = Float32Array::from((0..12).map(|i| i as f32).collect::<Vec<_>>());
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let list = FixedSizeListArray::new(item, 4, Arc::new(values), None);
    let host = from_arrow_column(Arc::new(list));
    assert_eq!(host.shape(), &[3, 4]);
    assert_eq!(host.view::<f32>().unwrap()[[2, 3]], 11.0);
}

fn from_arrow_column(array: ferry::arrow::arrow_array::ArrayRef) -> HostArray {
    let field = std::sync::Arc::new(ferry::arrow::arrow_schema::Field::new(
        "v",
        array.data_type().clone(),
        false,
    ));
    let col = TensorColumn::try_new(field, array).unwrap();
    assert_eq!(col.kind(), ColumnKind::FixedShapeTensor);
    col.to_host().unwrap()
}

#[test]
fn concat_rows_joins_any_layouts_and_refuses_parts_that_do_not_match() {
    let a = HostArray::from_vec(vec![2, 3], (0..6).map(|i| i as f64).collect()).unwrap();
    let transposed = HostArray::from_array(
        ferry::ndarray::Array2::from_shape_fn((3, 1), |(i, _)| 6.0 + i as f64)
            .reversed_axes()
            .into_dyn(),
    );
    let joined = HostArray::concat_rows(&[a.clone(), transposed]).unwrap();
    assert_eq!(joined.shape(), &[3, 3]);
    assert_eq!(
        joined
            .view::<f64>()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        (0..9).map(|i| i as f64).collect::<Vec<_>>()
    );
    let wrong_shape = HostArray::from_vec(vec![1, 4], vec![0.0f64; 4]).unwrap();
    let err = HostArray::concat_rows(&[a.clone(), wrong_shape]).unwrap_err();
    assert!(
        matches!(err, ferry::Error::ConcatMismatch { index: 1, .. }),
        "{err}"
    );
    let wrong_dtype = HostArray::from_vec(vec![1, 3], vec![0.0f32; 3]).unwrap();
    assert!(HostArray::concat_rows(&[a.clone(), wrong_dtype]).is_err());
    assert!(HostArray::concat_rows(&[]).is_err());
    // One part is itself, no copy.
    let one = HostArray::concat_rows(std::slice::from_ref(&a)).unwrap();
    assert_eq!(one.as_ptr(), a.as_ptr());
    assert_eq!(one.copies(), 0);
}

/// Audit round 7 (helper 26): what a reader behind `export_stream` and hostile sizes could
/// reach before the fixes — each of these aborted, panicked or read out of bounds.
mod round7 {
    use std::sync::Arc;

    use ferry::HostArray;
    use ferry::arrow::arrow_array::{
        Array, ArrayRef, FixedSizeListArray, Float32Array, Int8Array, Int64Array, RecordBatch,
        RecordBatchIterator, RecordBatchOptions, RecordBatchReader, RecordBatchWriter, UnionArray,
    };
    use ferry::arrow::arrow_schema::{
        ArrowError, DataType, Field, Schema, SchemaRef, UnionFields, UnionMode,
    };
    use ferry::arrow::{TensorColumn, TensorReader, TensorWriter, ffi};

    fn one_batch() -> RecordBatch {
        let x = HostArray::from_vec(vec![2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
        ferry::arrow::record_batch([TensorColumn::from_batch("x", &x).unwrap()]).unwrap()
    }

    /// An error whose `Display` panics.
    #[derive(Debug)]
    struct PanickyDisplay;
    impl std::fmt::Display for PanickyDisplay {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            panic!("Display of the reader's error panicked")
        }
    }
    impl std::error::Error for PanickyDisplay {}

    /// A panic payload whose drop panics.
    struct PanickyPayload;
    impl Drop for PanickyPayload {
        fn drop(&mut self) {
            panic!("the panic payload's drop panicked");
        }
    }

    /// A reader of given items that may panic in `next` (with a payload) or in its drop.
    struct Reader {
        schema: SchemaRef,
        items: Vec<Result<RecordBatch, ArrowError>>,
        panic_payload: bool,
        panic_on_drop: bool,
    }

    impl Iterator for Reader {
        type Item = Result<RecordBatch, ArrowError>;
        fn next(&mut self) -> Option<Self::Item> {
            if self.panic_payload {
                std::panic::panic_any(PanickyPayload);
            }
            (!self.items.is_empty()).then(|| self.items.remove(0))
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
            panic_payload: false,
            panic_on_drop: false,
        }
    }

    /// The first item of `reader` read back through the C stream interface.
    fn first_through_c(reader: impl RecordBatchReader + Send + 'static) -> Option<String> {
        let stream = ffi::export_stream(reader).unwrap();
        // SAFETY: `export_stream`'s stream keeps the C stream interface.
        let mut imported = unsafe { ffi::import_stream(stream) }.unwrap();
        imported.next().map(|r| match r {
            Ok(batch) => format!("ok {}", batch.num_rows()),
            Err(e) => e.to_string(),
        })
    }

    #[test]
    fn an_error_whose_display_panics_is_an_error_not_an_abort() {
        let r = reader(vec![Err(ArrowError::ExternalError(Box::new(
            PanickyDisplay,
        )))]);
        let got = first_through_c(r).unwrap();
        assert!(got.contains("panicked"), "{got}");
    }

    #[test]
    fn a_panic_whose_payload_panics_on_drop_is_an_error_not_an_abort() {
        let mut r = reader(vec![]);
        r.panic_payload = true;
        let got = first_through_c(r).unwrap();
        assert!(got.contains("panicked"), "{got}");
    }

    #[test]
    fn a_reader_whose_drop_panics_is_released_without_an_abort() {
        let mut r = reader(vec![]);
        r.panic_on_drop = true;
        drop(ffi::export_stream(r).unwrap());
    }

    #[test]
    fn a_batch_whose_column_type_only_equals_its_fields_is_refused_at_export() {
        // A sparse union whose children are in another order than the schema's: the batch's
        // schema is the stream's, so only a per-column type check sees it.
        let n = 1000;
        let field = |ids: [i8; 2], flip: bool| {
            let (a, b) = (
                Field::new("small", DataType::Int8, false),
                Field::new("big", DataType::Int64, false),
            );
            let fields = if flip { vec![b, a] } else { vec![a, b] };
            UnionFields::try_new(ids.to_vec(), fields).unwrap()
        };
        let union = UnionArray::try_new(
            field([0, 1], false),
            vec![0i8; n].into(),
            None,
            vec![
                Arc::new(Int8Array::from(vec![1i8; n])) as ArrayRef,
                Arc::new(Int64Array::from(vec![2i64; n])),
            ],
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "u",
            DataType::Union(field([1, 0], true), UnionMode::Sparse),
            false,
        )]));
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            vec![Arc::new(union)],
            &RecordBatchOptions::new().with_match_field_names(false),
        )
        .unwrap();
        let got = first_through_c(RecordBatchIterator::new(vec![Ok(batch)], schema)).unwrap();
        assert!(got.contains("column types"), "{got}");
    }

    #[test]
    fn a_union_whose_child_is_not_of_its_fields_type_is_refused_at_export() {
        // Helper 27: arrow-rs's safe `UnionArray::try_new` takes an Int8 child for an Int64
        // field; a consumer sized the child's buffer by the field and read past it.
        let fields =
            UnionFields::try_new(vec![0], vec![Field::new("big", DataType::Int64, false)]).unwrap();
        let union = UnionArray::try_new(
            fields.clone(),
            vec![0i8; 1000].into(),
            None,
            vec![Arc::new(Int8Array::from(vec![1i8; 1000])) as ArrayRef],
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "u",
            DataType::Union(fields, UnionMode::Sparse),
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(union)]).unwrap();
        let got = first_through_c(RecordBatchIterator::new(vec![Ok(batch)], schema)).unwrap();
        assert!(got.contains("Int8"), "{got}");
    }

    /// A batch of no columns and `rows` rows, and its (empty) schema.
    fn rows_only(rows: usize) -> (RecordBatch, SchemaRef) {
        let schema = Arc::new(Schema::empty());
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(schema.clone(), vec![], &options).unwrap();
        (batch, schema)
    }

    #[test]
    fn a_batch_of_more_rows_than_an_int64_holds_is_refused_at_export() {
        let (batch, schema) = rows_only(usize::MAX);
        let got = first_through_c(RecordBatchIterator::new(vec![Ok(batch)], schema)).unwrap();
        assert!(got.contains("int64"), "{got}");
    }

    #[test]
    fn zero_width_rows_past_isize_max_are_an_overflow_error_not_a_panic() {
        let part = HostArray::from_vec(vec![isize::MAX as usize, 0], Vec::<f32>::new()).unwrap();
        let err = HostArray::concat_rows(&[part.clone(), part]).unwrap_err();
        assert!(matches!(err, ferry::Error::LayoutOverflow { .. }), "{err}");
        assert!(HostArray::from_vec(vec![usize::MAX, 0], Vec::<f32>::new()).is_err());
        // A zero-width FixedSizeList holds any number of rows without a buffer.
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let list = FixedSizeListArray::try_new_with_length(
            item,
            0,
            Arc::new(Float32Array::from(Vec::<f32>::new())),
            None,
            isize::MAX as usize + 1,
        )
        .unwrap();
        let field = Arc::new(Field::new("v", list.data_type().clone(), false));
        let column = TensorColumn::try_new(field, Arc::new(list)).unwrap();
        assert!(column.to_host().is_err());
    }

    struct Sink;
    impl RecordBatchWriter for Sink {
        fn write(&mut self, _: &RecordBatch) -> Result<(), ArrowError> {
            Ok(())
        }
        fn close(self) -> Result<(), ArrowError> {
            Ok(())
        }
    }

    #[test]
    fn a_tensor_writers_row_count_that_would_overflow_is_an_error() {
        let (batch, schema) = rows_only(usize::MAX);
        let mut writer = TensorWriter::new(Sink, schema);
        writer.write(&batch).unwrap();
        assert!(writer.write(&batch).is_err());
        assert_eq!(writer.rows(), usize::MAX);
        let _ = TensorReader::new(RecordBatchIterator::new(Vec::new(), one_batch().schema()));
    }
}

/// Audit round 8 (helpers 28 and 29): what safe code could still reach an abort, a wrong
/// value or a panic through the stream, column and DLPack paths before the fixes.
mod round8 {
    use std::sync::Arc;

    use ferry::arrow::arrow_array::types::Int32Type;
    use ferry::arrow::arrow_array::{
        ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch, RecordBatchIterator,
        RecordBatchReader,
    };
    use ferry::arrow::arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
    use ferry::arrow::{TensorColumn, TensorReader, ffi};

    /// An error source and a buffer owner whose drop panics.
    #[derive(Debug)]
    struct PanicsWhenDropped(Vec<u8>);
    impl std::fmt::Display for PanicsWhenDropped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an error whose drop panics")
        }
    }
    impl std::error::Error for PanicsWhenDropped {}
    impl AsRef<[u8]> for PanicsWhenDropped {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            panic!("dropped");
        }
    }

    #[test]
    fn a_reader_error_whose_source_panics_when_dropped_is_an_error_not_an_abort() {
        // Before: the io::Error source travelled out of the guard and arrow-rs dropped it in
        // its extern "C" get_next, which aborted.
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float32, false)]));
        let error = ArrowError::IoError(
            "disk".into(),
            std::io::Error::other(PanicsWhenDropped(Vec::new())),
        );
        let reader = RecordBatchIterator::new(vec![Err(error)], schema);
        let stream = ffi::export_stream(reader).unwrap();
        let mut imported =
            ferry::arrow::arrow_array::ffi_stream::ArrayStreamReader::try_new(stream).unwrap();
        let got = imported.next().unwrap().unwrap_err().to_string();
        assert!(got.contains("disk") || got.contains("panicked"), "{got}");
        assert!(imported.next().is_none());
    }

    #[test]
    fn dropping_a_dlpack_export_over_an_owner_whose_drop_panics_does_not_abort() {
        // Before: ferry-core's extern "C" deleter dropped the owner unguarded and aborted.
        let buffer =
            arrow_buffer::Buffer::from(bytes::Bytes::from_owner(PanicsWhenDropped(vec![0u8; 16])));
        let array: ArrayRef = Arc::new(Float32Array::new(
            arrow_buffer::ScalarBuffer::new(buffer, 0, 4),
            None,
        ));
        let field = Arc::new(Field::new("x", DataType::Float32, false));
        let column = TensorColumn::try_new(field, array).unwrap();
        let host = column.to_host().unwrap();
        drop(column);
        let exported = host.to_dlpack();
        drop(host);
        drop(exported);
    }

    #[test]
    fn a_fixed_size_list_whose_length_times_size_wraps_is_refused_where_it_enters() {
        // arrow-rs's safe `try_new_with_length` multiplies unchecked: 2^34 rows of 2^30 values
        // over no values passed, and `export_array` handed a consumer a 2^64-element array.
        let item = Arc::new(Field::new_list_field(DataType::Float32, true));
        let values: ArrayRef = Arc::new(Float32Array::from(Vec::<f32>::new()));
        let size = 1i32 << 30;
        // With overflow checks on (the dev profile), arrow-rs's multiplication panics, and
        // so does any arrow-rs that checks the product: nothing reaches ferry then.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            FixedSizeListArray::try_new_with_length(item.clone(), size, values, None, 1 << 34)
        }));
        let Ok(Ok(list)) = built else {
            return;
        };
        let field = Arc::new(Field::new("t", DataType::FixedSizeList(item, size), false));
        let err = TensorColumn::try_new(field, Arc::new(list)).unwrap_err();
        assert!(err.to_string().contains("buffers do not hold"), "{err}");
    }

    #[test]
    fn split_struct_refuses_an_array_that_is_not_of_its_fields_type() {
        // Before: a List<Int32> array under a Struct<x: Int32> field gave its child's values
        // as column x ([10, 11] from [[10, 11, 12], [20, 21, 22]]).
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(10), Some(11), Some(12)]),
            Some(vec![Some(20), Some(21), Some(22)]),
        ]);
        let field = Field::new(
            "batch",
            DataType::Struct(Fields::from(vec![Field::new("x", DataType::Int32, true)])),
            false,
        );
        let err = ffi::split_struct(&field, &(Arc::new(list) as ArrayRef)).unwrap_err();
        assert!(err.to_string().contains("the field says"), "{err}");
    }

    /// A reader whose `schema()` names its column "other" on the first call only.
    struct SchemaChangesAfterOneCall {
        calls: std::cell::Cell<u32>,
        batches: Vec<RecordBatch>,
    }
    impl Iterator for SchemaChangesAfterOneCall {
        type Item = Result<RecordBatch, ArrowError>;
        fn next(&mut self) -> Option<Self::Item> {
            self.batches.pop().map(Ok)
        }
    }
    impl RecordBatchReader for SchemaChangesAfterOneCall {
        fn schema(&self) -> SchemaRef {
            let n = self.calls.get();
            self.calls.set(n + 1);
            let name = if n == 0 { "other" } else { "x" };
            Arc::new(Schema::new(vec![Field::new(
                name,
                DataType::Float32,
                false,
            )]))
        }
    }

    #[test]
    fn read_column_combined_over_a_reader_whose_schema_changes_is_an_error_not_a_panic() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float32, false)]));
        let x: ArrayRef = Arc::new(Float32Array::from(vec![1.0f32, 2.0]));
        let batch = RecordBatch::try_new(schema, vec![x]).unwrap();
        let reader = TensorReader::new(SchemaChangesAfterOneCall {
            calls: std::cell::Cell::new(0),
            batches: vec![batch],
        });
        // The first answer lacks "x": refused by name, whatever later answers say.
        let err = reader.read_column_combined("x").unwrap_err();
        assert!(
            matches!(err, ferry::arrow::Error::NoSuchColumn { .. }),
            "{err}"
        );
    }
}
