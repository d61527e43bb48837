//! The README's code, as a newcomer copies it: the three jobs (plot, custom function, legacy
//! f64 code fed integers), the generic `summary`, fixed-rank and cast views, `convert` with the
//! source framework inferred, and the Arrow dataset.

use candle_core::{Device, Tensor};
use ferry::{Error, ToHost};

type AnyResult = Result<(), Box<dyn std::error::Error>>;

#[cfg(feature = "plot")]
#[test]
fn readme_plot_snippet_writes_a_png() -> AnyResult {
    let dir = std::env::temp_dir().join(format!("ferry-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let samples = Tensor::randn(0f32, 1., (100, 2), &Device::Cpu)?.to_host()?;
    ferry::plot::scatter(
        &[("candle", &samples)],
        "samples",
        dir.join("scatter.png"),
        (640, 480),
    )?;
    assert!(std::fs::metadata(dir.join("scatter.png"))?.len() > 0);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn readme_custom_function_and_legacy_snippets_compute_what_they_say() -> AnyResult {
    let grid = Tensor::arange(0f32, 25., &Device::Cpu)?.reshape((5, 5))?;
    let host = grid.to_host()?;
    let row_sums = host.view2::<f32>()?.sum_axis(ferry::ndarray::Axis(1));
    let theirs: Vec<f32> = grid.sum(1)?.to_vec1()?;
    assert_eq!(row_sums.to_vec(), theirs);
    assert_eq!(host.copies(), 0);
    let owned = grid.to_array::<f32>()?;
    assert_eq!(owned.shape(), [5, 5]);

    // The legacy snippet's input is integers, [[1, 2], [3, 4]].
    let legacy = Tensor::new(&[[1i64, 2], [3, 4]], &Device::Cpu)?;
    let mean = legacy.to_host()?.view_cast::<f64>()?.mean();
    assert_eq!(mean, Some(2.5));
    Ok(())
}

#[test]
fn view_cast_borrows_when_the_dtype_already_matches() -> AnyResult {
    let t = Tensor::new(&[[1f64, 2.], [3., 4.]], &Device::Cpu)?;
    let host = t.to_host()?;
    let same = host.view_cast::<f64>()?;
    assert!(same.is_view(), "f64 viewed as f64 is a view, not a copy");
    let host32 = Tensor::new(&[1f32, 2.], &Device::Cpu)?.to_host()?;
    assert!(
        host32.view_cast::<f64>()?.is_owned(),
        "f32 as f64 is a cast"
    );
    Ok(())
}

#[test]
fn fixed_rank_views_name_both_ranks_and_the_shape() -> AnyResult {
    let host = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu)?.to_host()?;
    let err = host.view2::<f32>().unwrap_err();
    assert!(
        matches!(err, Error::RankMismatch { expected: 2, found: 3, ref shape } if shape == &[2, 3, 4]),
        "{err}"
    );
    assert!(err.to_string().contains("[2, 3, 4]"), "{err}");
    assert_eq!(
        host.view_dim::<f32, ferry::ndarray::Ix3>()?.shape(),
        [2, 3, 4]
    );
    // ndarray's own shape errors convert with `?`.
    let shape_err: Error = ferry::ndarray::Array::from_shape_vec((2, 2), vec![1f32])
        .unwrap_err()
        .into();
    assert!(matches!(shape_err, Error::Shape(_)), "{shape_err}");
    Ok(())
}

#[cfg(feature = "burn")]
#[test]
fn convert_infers_the_source_and_burn_cpu_needs_no_rank() -> AnyResult {
    let t = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)?;
    let b = ferry::convert::<ferry::Burn>(&t, &ferry::Burn::cpu())?;
    assert_eq!(b.to_host()?.view::<f32>()?, t.to_host()?.view::<f32>()?);
    // A dtype the target cannot hold names the way out through the host.
    let ints = Tensor::new(&[1i64, 2], &Device::Cpu)?;
    let err = ferry::convert::<ferry::Burn<1>>(&ints, &ferry::Burn::cpu()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedDtype {
                dtype: ferry::DType::I64,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("from_host"), "{err}");
    assert!(err.to_string().contains("Burn Float tensor"), "{err}");
    // A 3-D tensor into `ferry::Burn` (rank 2) names the type that fits.
    let t3 = Tensor::zeros((64, 4, 8), candle_core::DType::F32, &Device::Cpu)?;
    let err = ferry::convert::<ferry::Burn>(&t3, &ferry::Burn::cpu()).unwrap_err();
    assert!(err.to_string().contains("`ferry::Burn<3>`"), "{err}");
    let b3 = ferry::convert::<ferry::Burn<3>>(&t3, &ferry::Burn::cpu())?;
    assert_eq!(b3.dims(), [64, 4, 8]);
    // The README's spellings of `from_host` with Burn.
    use ferry::Backend;
    let h3 = t3.to_host()?;
    let _: burn::tensor::Tensor<3> = ferry::Burn::<3>::from_host(&h3, &ferry::Burn::cpu())?;
    let _: burn::tensor::Tensor<2> = <ferry::Burn>::from_host(&t.to_host()?, &ferry::Burn::cpu())?;
    // A conversion that copies is counted in the thread's copy totals: Burn to candle copies
    // into candle's own storage.
    let before = ferry::copy_totals();
    let c = ferry::convert::<ferry::Candle>(&b3, &Device::Cpu)?;
    let copied = ferry::copy_totals().since(before);
    assert_eq!(c.dims(), [64, 4, 8]);
    assert!(copied.copies >= 1, "{copied:?}");
    assert!(copied.bytes >= 64 * 4 * 8 * 4, "{copied:?}");
    Ok(())
}

#[cfg(feature = "arrow")]
#[test]
fn readme_arrow_snippet_writes_a_dataset_and_reads_it_back() -> AnyResult {
    use ferry::arrow::{DatasetWriter, FileFormat, TensorColumn, column, parquet, record_batch};

    let t = Tensor::randn(0f32, 1., (64, 4, 8), &Device::Cpu)?;
    let embeddings = TensorColumn::from_batch("embedding", &t.to_host()?)?;
    assert!(embeddings.copy_log().is_empty());
    let batch = record_batch([embeddings])?;
    let dir = std::env::temp_dir().join(format!("ferry-readme-dataset-{}", std::process::id()));
    let mut dataset = DatasetWriter::create(&dir, "backend", FileFormat::Parquet, batch.schema())?;
    dataset.write("candle", &batch)?;
    dataset.finish()?;
    let read = parquet::read_file(dir.join("backend=candle/part-0.parquet"))?;
    let back = column(&read[0], "embedding")?.to_host()?;
    assert_eq!(back.shape(), &[64, 4, 8]);
    assert_eq!(back.to_array::<f32>()?, t.to_host()?.to_array::<f32>()?);
    std::fs::remove_dir_all(&dir)?;
    // The one-file case.
    let file = std::env::temp_dir().join(format!("ferry-readme-{}.parquet", std::process::id()));
    parquet::write_file(&file, &[batch])?;
    let one = parquet::read_file(&file)?;
    assert_eq!(
        column(&one[0], "embedding")?.to_host()?.shape(),
        &[64, 4, 8]
    );
    std::fs::remove_file(&file)?;
    Ok(())
}

/// The README's block that starts after the line `after` and is fenced as `lang`.
#[cfg(all(feature = "testing", feature = "python"))]
fn readme_block(after: &str, lang: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find(after).expect("the README has the line") + after.len();
    let open = format!("```{lang}\n");
    let body = start + readme[start..].find(&open).expect("a fenced block follows") + open.len();
    let end = body + readme[body..].find("```\n").expect("the block is closed");
    readme[body..end].to_string()
}

/// The README's port under test.
#[cfg(all(feature = "testing", feature = "python"))]
fn readme_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(1)?)
}

#[cfg(all(feature = "testing", feature = "python"))]
#[test]
fn readme_cross_backend_snippets_check_a_golden_file_pytorch_wrote_and_report_as_shown() -> AnyResult
{
    use ferry::testing::Golden;
    use ferry::{Backend, Candle};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("encoder.safetensors");
    // The README's PyTorch side as it is written, with the file in a temporary folder.
    let python = readme_block("The PyTorch side writes the golden file once:", "python").replace(
        "\"tests/golden/encoder.safetensors\"",
        &format!("{:?}", path.to_str().unwrap()),
    );
    let code = std::ffi::CString::new(python)?;
    crate::python::with_python(|py| py.run(&code, None, None));

    // The README's Rust side.
    let golden = Golden::open(&path)?;
    let x = Candle::from_host(
        golden.get("input").expect("written by PyTorch"),
        &Device::Cpu,
    )?;
    let y = readme_softmax(&x)?;
    golden.check("softmax.out", &y)?;
    ferry::assert_close!(
        y,
        golden.get("softmax.out").unwrap(),
        rtol = 1e-5,
        atol = 1e-6
    );

    // The report it shows: one element off by 0.5.
    let mut off = y.to_host()?.to_array::<f32>()?;
    off[[0, 5]] += 0.5;
    let report = golden.check("softmax.out", &off).unwrap_err().to_string();
    let shown = readme_block("torch's report plus where:", "text");
    assert!(
        report.contains(shown.trim_end()),
        "the README shows:\n{shown}\nferry reports:\n{report}"
    );
    Ok(())
}

/// The README's extension code is the example extension's, line for line (which CI builds and
/// tests from Python): every line of its Rust block is a line of
/// examples/pyo3-extension/src/lib.rs.
#[test]
fn readme_extension_snippet_is_the_tested_example() -> AnyResult {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let example = std::fs::read_to_string(root.join("examples/pyo3-extension/src/lib.rs"))?;
    let section = readme
        .split("## Writing a Python extension with ferry")
        .nth(1)
        .ok_or("README has no extension section")?;
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .ok_or("the extension section has no Rust block")?;
    let lines: std::collections::HashSet<&str> = example.lines().map(str::trim_end).collect();
    let missing: Vec<&str> = block
        .lines()
        .filter(|line| !line.trim().is_empty() && !lines.contains(line))
        .collect();
    assert!(
        missing.is_empty(),
        "README lines not in the example: {missing:#?}"
    );
    assert!(block.lines().count() > 30);
    Ok(())
}
