//! `cargo xtask demo`: the three scenarios (visualise, custom function, legacy code) on every
//! backend this build enables, a scatter plot with one panel per backend, a table of what
//! ferry copied, and (feature `arrow`) a fourth: a batch of embeddings from every backend in
//! one hive-partitioned Parquet dataset and ferry's answers over it (`expected.json`, which
//! `cargo xtask demo`'s engine step checks pyarrow, DuckDB, Polars, DataFusion and Ray Data
//! against); and (feature `testing`) a fifth: one softmax in every framework, compared pairwise
//! with `ferry::testing`, and a bf16 run's failure report.

use std::path::PathBuf;
use std::time::Instant;

use ferry::ndarray::{ArrayD, ArrayViewD, Axis};
use ferry::{HostArray, Result, ToHost};

/// Existing analysis code that only knows ndarray (scenario 3).
fn mean(a: &ArrayViewD<'_, f64>) -> f64 {
    a.sum() / a.len() as f64
}

/// A plain ndarray function (scenario 2): the sum of each row.
fn row_sums(a: &ArrayViewD<'_, f32>) -> ArrayD<f32> {
    a.sum_axis(Axis(1))
}

/// What the demo needs from a framework: tensors made by the framework itself.
trait DemoBackend {
    const NAME: &'static str;
    /// The backend's partition in the Parquet dataset (`backend=KEY`).
    const KEY: &'static str;
    type T: ToHost;
    fn device() -> String;
    /// 100×2 standard-normal samples.
    fn randn() -> Self::T;
    /// 0..25 as a 5×5 f32 tensor.
    fn grid() -> Self::T;
    /// The framework's own row sums of `grid()`.
    fn native_row_sums(t: &Self::T) -> Vec<f32>;
    /// [[1, 2], [3, 4]] as the framework's i64, on the host (legacy code wants f64).
    fn small() -> Result<HostArray>;
    /// `rows` standard-normal 4×8 embeddings made by the framework, on the host (scenario 4).
    fn embeddings(rows: usize) -> Result<HostArray>;
    /// The framework's own softmax over axis 1 of `logits`, on the host (scenario 5).
    fn softmax(logits: &HostArray) -> Result<HostArray>;
}

#[cfg(feature = "candle")]
struct DemoCandle;

#[cfg(feature = "candle")]
impl DemoBackend for DemoCandle {
    const NAME: &'static str = "candle";
    const KEY: &'static str = "candle";
    type T = candle_core::Tensor;
    fn device() -> String {
        "cpu".into()
    }
    fn randn() -> Self::T {
        candle_core::Tensor::randn(0f32, 1.0, (100, 2), &candle_core::Device::Cpu)
            .expect("candle randn")
    }
    fn grid() -> Self::T {
        candle_core::Tensor::arange(0f32, 25.0, &candle_core::Device::Cpu)
            .and_then(|t| t.reshape((5, 5)))
            .expect("candle grid")
    }
    fn native_row_sums(t: &Self::T) -> Vec<f32> {
        t.sum(1).and_then(|s| s.to_vec1()).expect("candle sum")
    }
    fn small() -> Result<HostArray> {
        candle_core::Tensor::new(&[[1i64, 2], [3, 4]], &candle_core::Device::Cpu)
            .expect("candle tensor")
            .to_host()
    }
    fn embeddings(rows: usize) -> Result<HostArray> {
        candle_core::Tensor::randn(0f32, 1.0, (rows, 4, 8), &candle_core::Device::Cpu)
            .expect("candle randn")
            .to_host()
    }
    fn softmax(logits: &HostArray) -> Result<HostArray> {
        let t = <ferry::Candle as ferry::Backend>::from_host(logits, &candle_core::Device::Cpu)?;
        candle_softmax(&t).to_host()
    }
}

/// Softmax over axis 1 with candle's ops (the max subtracted first), in the tensor's dtype.
#[cfg(feature = "candle")]
fn candle_softmax(t: &candle_core::Tensor) -> candle_core::Tensor {
    let max = t.max_keepdim(1).expect("candle max");
    let e = t
        .broadcast_sub(&max)
        .and_then(|d| d.exp())
        .expect("candle exp");
    let sum = e.sum_keepdim(1).expect("candle sum");
    e.broadcast_div(&sum).expect("candle div")
}

#[cfg(feature = "burn")]
struct DemoBurn;

#[cfg(feature = "burn")]
impl DemoBackend for DemoBurn {
    const NAME: &'static str = "burn (flex)";
    const KEY: &'static str = "burn";
    type T = burn::tensor::Tensor<2>;
    fn device() -> String {
        "cpu".into()
    }
    fn randn() -> Self::T {
        burn::tensor::Tensor::random(
            [100, 2],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &burn::tensor::Device::flex(),
        )
    }
    fn grid() -> Self::T {
        burn::tensor::Tensor::<1, burn::tensor::Int>::arange(0..25, &burn::tensor::Device::flex())
            .float()
            .reshape([5, 5])
    }
    fn native_row_sums(t: &Self::T) -> Vec<f32> {
        t.clone()
            .sum_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("burn sum")
    }
    fn small() -> Result<HostArray> {
        burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
            [[1i64, 2], [3, 4]],
            &burn::tensor::Device::flex(),
        )
        .to_host()
    }
    fn embeddings(rows: usize) -> Result<HostArray> {
        burn::tensor::Tensor::<3>::random(
            [rows, 4, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &burn::tensor::Device::flex(),
        )
        .to_host()
    }
    fn softmax(logits: &HostArray) -> Result<HostArray> {
        let t =
            <ferry::Burn<2> as ferry::Backend>::from_host(logits, &burn::tensor::Device::flex())?;
        burn::tensor::activation::softmax(t, 1).to_host()
    }
}

#[cfg(feature = "tch")]
struct DemoTch;

#[cfg(feature = "tch")]
impl DemoBackend for DemoTch {
    const NAME: &'static str = "tch";
    const KEY: &'static str = "tch";
    type T = tch::Tensor;
    fn device() -> String {
        "cpu".into()
    }
    fn randn() -> Self::T {
        tch::Tensor::randn([100, 2], (tch::Kind::Float, tch::Device::Cpu))
    }
    fn grid() -> Self::T {
        tch::Tensor::arange(25, (tch::Kind::Float, tch::Device::Cpu)).reshape([5, 5])
    }
    fn native_row_sums(t: &Self::T) -> Vec<f32> {
        Vec::<f32>::try_from(t.sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Float))
            .expect("tch sum")
    }
    fn small() -> Result<HostArray> {
        // Bound first: a temporary base would still hold the storage during `to_host`, which
        // then copies (a storage another tensor reaches is never shared).
        let t = tch::Tensor::from_slice(&[1i64, 2, 3, 4]).reshape([2, 2]);
        t.to_host()
    }
    fn embeddings(rows: usize) -> Result<HostArray> {
        tch::Tensor::randn([rows as i64, 4, 8], (tch::Kind::Float, tch::Device::Cpu)).to_host()
    }
    fn softmax(logits: &HostArray) -> Result<HostArray> {
        let t = <ferry::Tch as ferry::Backend>::from_host(logits, &tch::Device::Cpu)?;
        t.softmax(1, tch::Kind::Float).to_host()
    }
}

struct Row {
    backend: &'static str,
    device: String,
    bytes_copied: u64,
    zero_copy: bool,
    nanos: u128,
}

/// A backend's embeddings for the Parquet dataset: its partition key and the host array.
type Embeddings = (&'static str, HostArray);

fn run<B: DemoBackend>(
    samples: &mut Vec<(&'static str, HostArray)>,
    embeddings: &mut Vec<Embeddings>,
    rows: usize,
    logits: &HostArray,
    softmaxes: &mut Vec<(&'static str, HostArray)>,
) -> Result<Row> {
    // Scenario 1: samples for a plot.
    let t = B::randn();
    let host = t.to_host()?;
    let mut times: Vec<u128> = (0..201)
        .map(|_| {
            let start = Instant::now();
            let h = std::hint::black_box(&t).to_host();
            let nanos = start.elapsed().as_nanos();
            drop(std::hint::black_box(h));
            nanos
        })
        .collect();
    times.sort_unstable();
    let v = host.view::<f32>()?;
    println!(
        "[{}] 100x2 standard normals on host: mean of column 0 = {:+.3}",
        B::NAME,
        v.column_mean(0)
    );

    // Scenario 2: a custom ndarray function, checked against the framework's own sums.
    let grid = B::grid();
    let grid_host = grid.to_host()?;
    let ours = row_sums(&grid_host.view::<f32>()?);
    let theirs = B::native_row_sums(&grid);
    println!(
        "[{}] row sums with ndarray: {ours}  (framework says {theirs:?})",
        B::NAME
    );
    assert_eq!(
        ours.iter().copied().collect::<Vec<_>>(),
        theirs,
        "{}: row sums disagree",
        B::NAME
    );

    // Scenario 3: legacy code that takes f64 views, fed integers (an explicit cast).
    let small = B::small()?;
    let m = mean(&small.view_cast::<f64>()?.view());
    println!("[{}] legacy mean of [[1,2],[3,4]]: {m}", B::NAME);
    assert_eq!(m, 2.5);

    let row = Row {
        backend: B::NAME,
        device: B::device(),
        bytes_copied: host.bytes_copied() + grid_host.bytes_copied() + small.bytes_copied(),
        zero_copy: host.copies() + grid_host.copies() + small.copies() == 0,
        nanos: times[times.len() / 2],
    };
    samples.push((B::NAME, host));
    embeddings.push((B::KEY, B::embeddings(rows)?));
    softmaxes.push((B::NAME, B::softmax(logits)?));
    Ok(row)
}

trait ColumnMean {
    fn column_mean(&self, c: usize) -> f32;
}

impl ColumnMean for ArrayViewD<'_, f32> {
    fn column_mean(&self, c: usize) -> f32 {
        let col = self.index_axis(Axis(1), c);
        col.sum() / col.len() as f32
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    let mut samples = Vec::new();
    let mut embeddings = Vec::new();
    let logits = cross_backend::logits(64, 10);
    let mut softmaxes = Vec::new();
    #[cfg(feature = "candle")]
    rows.push(run::<DemoCandle>(
        &mut samples,
        &mut embeddings,
        64,
        &logits,
        &mut softmaxes,
    )?);
    #[cfg(feature = "burn")]
    rows.push(run::<DemoBurn>(
        &mut samples,
        &mut embeddings,
        48,
        &logits,
        &mut softmaxes,
    )?);
    #[cfg(feature = "tch")]
    rows.push(run::<DemoTch>(
        &mut samples,
        &mut embeddings,
        32,
        &logits,
        &mut softmaxes,
    )?);
    if rows.is_empty() {
        println!("no backend enabled: build with features candle, burn and/or tch");
        return Ok(());
    }

    let out = std::env::var_os("FERRY_DEMO_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/ferry-demo"));
    std::fs::create_dir_all(&out)?;
    let png = out.join("scatter.png");
    let panels: Vec<(&str, &HostArray)> = samples.iter().map(|(n, h)| (*n, h)).collect();
    ferry::plot::scatter(
        &panels,
        "100 standard-normal samples per backend, via ferry",
        &png,
        (420 * panels.len() as u32, 440),
    )?;
    println!("\nscatter plot: {}", png.display());
    #[cfg(feature = "arrow")]
    engines::write_dataset(
        &out.join("dataset"),
        &out.join("expected.json"),
        &embeddings,
    )?;
    #[cfg(not(feature = "arrow"))]
    let _ = embeddings;

    println!();
    println!(
        "{:<12} {:<7} {:>13} {:>10} {:>16}",
        "backend", "device", "bytes copied", "zero-copy", "time to host"
    );
    for r in rows {
        println!(
            "{:<12} {:<7} {:>13} {:>10} {:>13} ns",
            r.backend,
            r.device,
            r.bytes_copied,
            if r.zero_copy { "yes" } else { "no" },
            r.nanos
        );
    }
    if cfg!(debug_assertions) {
        println!(
            "(times to host: median of 201 calls in this debug-assertions build, whose \
             frameworks are unoptimised; `cargo xtask bench` measures the release build)"
        );
    }
    #[cfg(feature = "testing")]
    cross_backend::report(&logits, &softmaxes)?;
    #[cfg(not(feature = "testing"))]
    let _ = softmaxes;
    Ok(())
}

/// Scenario 5: one computation in every framework, checked against each other the way a port
/// is tested (`ferry::testing`): a softmax of the same logits in candle, Burn and tch, compared
/// pairwise, then one run in bf16 whose report is what a failing test prints.
mod cross_backend {
    use ferry::HostArray;

    /// `rows`×`cols` standard-normal logits (times 4), made once on the host (a fixed-seed
    /// Box–Muller over a xorshift generator) and handed to every framework through ferry.
    pub fn logits(rows: usize, cols: usize) -> HostArray {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let values = (0..rows * cols)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                (4.0 * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        HostArray::from_vec(vec![rows, cols], values).expect("rows × cols values")
    }

    #[cfg(feature = "testing")]
    pub fn report(
        logits: &HostArray,
        softmaxes: &[(&'static str, HostArray)],
    ) -> Result<(), Box<dyn std::error::Error>> {
        use ferry::testing::{Tolerance, compare};
        println!(
            "\n[cross-backend] softmax of {:?} logits in each framework, compared with ferry::testing (f32 tolerances: rtol 1.3e-6, atol 1e-5):",
            logits.shape()
        );
        println!(
            "{:<26} {:>13} {:>13}  verdict",
            "pair", "max abs diff", "max rel diff"
        );
        for (i, (a_name, a)) in softmaxes.iter().enumerate() {
            for (e_name, e) in &softmaxes[i + 1..] {
                let c = compare(a, e, &Tolerance::default())?;
                println!(
                    "{:<26} {:>13.3e} {:>13.3e}  {}",
                    format!("{a_name} vs {e_name}"),
                    c.max_abs_diff(),
                    c.max_rel_diff(),
                    if c.is_close() { "close" } else { "NOT close" }
                );
                assert!(c.is_close(), "{a_name} and {e_name} disagree:\n{c}");
            }
        }
        if let Some(low) = bf16_softmax(logits) {
            let (name, reference) = &softmaxes[0];
            let c = compare(&low, reference, &Tolerance::default())?
                .with_origins("candle, computed in bf16", format!("{name}, f32"));
            println!(
                "\n[cross-backend] the same softmax computed in bf16, checked at f32's tolerance — what assert_close! prints:\n{c}"
            );
            assert!(!c.is_close(), "bf16 cannot match f32 at f32's tolerance");
        }
        Ok(())
    }

    /// The softmax computed in bf16 by candle, back in f32 (`None` without candle).
    #[cfg(feature = "testing")]
    fn bf16_softmax(logits: &HostArray) -> Option<HostArray> {
        #[cfg(feature = "candle")]
        {
            use ferry::ToHost;
            let t = <ferry::Candle as ferry::Backend>::from_host(logits, &candle_core::Device::Cpu)
                .ok()?
                .to_dtype(candle_core::DType::BF16)
                .ok()?;
            let out = super::candle_softmax(&t)
                .to_dtype(candle_core::DType::F32)
                .ok()?;
            out.to_host().ok()
        }
        #[cfg(not(feature = "candle"))]
        {
            let _ = logits;
            None
        }
    }
}

/// Scenario 4: tensors to the engines that distribute work. Every backend's embeddings go into
/// one Parquet dataset partitioned by backend (an `arrow.fixed_shape_tensor` column, shared
/// with the framework's memory until written, and each embedding's norm); `expected.json`,
/// beside the dataset (its root holds only partitions, so every reader opens it plainly),
/// records what ferry computes, and `arrow_engines.py` (the engine step `cargo xtask demo`
/// runs next) checks pyarrow, DuckDB, Polars, DataFusion and Ray Data against it.
#[cfg(feature = "arrow")]
mod engines {
    use std::path::Path;

    use ferry::HostArray;
    use ferry::arrow::{DatasetWriter, FileFormat, TensorColumn, record_batch};
    use ferry::ndarray::Axis;

    type Error = Box<dyn std::error::Error>;

    /// One partition's answers: rows, mean of the norms, sum of every value.
    fn answers(embeddings: &HostArray) -> Result<(Vec<f64>, String), Error> {
        let values = embeddings.view::<f32>()?.mapv(f64::from);
        let flat = values.to_shape((embeddings.shape()[0], 32))?;
        let norms: Vec<f64> = flat.map_axis(Axis(1), |row| row.dot(&row).sqrt()).to_vec();
        let json = format!(
            r#"{{"rows": {}, "mean_norm": {:?}, "embedding_sum": {:?}}}"#,
            norms.len(),
            norms.iter().sum::<f64>() / norms.len() as f64,
            values.sum()
        );
        Ok((norms, json))
    }

    pub fn write_dataset(
        root: &Path,
        expected_json: &Path,
        partitions: &[(&'static str, HostArray)],
    ) -> Result<(), Error> {
        let _ = std::fs::remove_dir_all(root);
        let mut dataset: Option<DatasetWriter> = None;
        let mut expected = Vec::new();
        for (key, embeddings) in partitions {
            let (norms, json) = answers(embeddings)?;
            expected.push(format!(r#""{key}": {json}"#));
            let norms = HostArray::from_vec(vec![norms.len()], norms)?;
            let batch = record_batch([
                TensorColumn::from_batch("embedding", embeddings)?,
                TensorColumn::from_batch("norm", &norms)?,
            ])?;
            if dataset.is_none() {
                dataset = Some(DatasetWriter::create(
                    root,
                    "backend",
                    FileFormat::Parquet,
                    batch.schema(),
                )?);
            }
            dataset
                .as_mut()
                .expect("created above")
                .write(key, &batch)?;
        }
        let Some(dataset) = dataset else {
            return Ok(());
        };
        let files = dataset.finish()?;
        let expected = format!(
            r#"{{"embedding_shape": [4, 8], "backends": {{{}}}}}"#,
            expected.join(", ")
        );
        std::fs::write(expected_json, expected)?;
        let sizes: Vec<String> = partitions
            .iter()
            .map(|(key, e)| format!("{key} {} rows", e.shape()[0]))
            .collect();
        println!(
            "\nParquet dataset: {} ({} files, one per backend: {}; embeddings as arrow.fixed_shape_tensor)",
            root.display(),
            files.len(),
            sizes.join(", ")
        );
        println!(
            "ferry's answers for the engines: {}",
            expected_json.display()
        );
        Ok(())
    }
}
