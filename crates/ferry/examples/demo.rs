//! `cargo xtask demo`: the three scenarios (visualise, custom function, legacy code) on every
//! backend this build enables, a scatter plot with one panel per backend, a table of what
//! ferry copied, and (feature `arrow`) a fourth: a batch of embeddings from every backend in
//! one hive-partitioned Parquet dataset, with the command that queries it with DataFusion and
//! Ray Data.

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
        tch::Tensor::from_slice(&[1i64, 2, 3, 4])
            .reshape([2, 2])
            .to_host()
    }
    fn embeddings(rows: usize) -> Result<HostArray> {
        tch::Tensor::randn([rows as i64, 4, 8], (tch::Kind::Float, tch::Device::Cpu)).to_host()
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
    #[cfg(feature = "candle")]
    rows.push(run::<DemoCandle>(&mut samples, &mut embeddings, 64)?);
    #[cfg(feature = "burn")]
    rows.push(run::<DemoBurn>(&mut samples, &mut embeddings, 48)?);
    #[cfg(feature = "tch")]
    rows.push(run::<DemoTch>(&mut samples, &mut embeddings, 32)?);
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
    engines::write_dataset(&out.join("dataset"), &embeddings)?;
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
    Ok(())
}

/// Scenario 4: tensors to the engines that distribute work. Every backend's embeddings go into
/// one Parquet dataset partitioned by backend (an `arrow.fixed_shape_tensor` column, shared
/// with the framework's memory until written, and each embedding's norm); `expected.json`
/// records what ferry computes, and `arrow_engines.py` checks DataFusion and Ray Data against
/// it.
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
        std::fs::write(root.join("expected.json"), expected)?;
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
        println!("query it with DataFusion (SQL) and Ray Data (map_batches over NumPy tensors):");
        println!(
            "  python crates/ferry/examples/arrow_engines.py {}",
            root.display()
        );
        Ok(())
    }
}
