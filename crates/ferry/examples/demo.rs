//! `cargo xtask demo`: the three scenarios (visualise, custom function, legacy code) on every
//! backend this build enables, a scatter plot with one panel per backend, and a table of what
//! ferry copied.

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
}

#[cfg(feature = "candle")]
struct DemoCandle;

#[cfg(feature = "candle")]
impl DemoBackend for DemoCandle {
    const NAME: &'static str = "candle";
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
}

#[cfg(feature = "burn")]
struct DemoBurn;

#[cfg(feature = "burn")]
impl DemoBackend for DemoBurn {
    const NAME: &'static str = "burn (flex)";
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
}

#[cfg(feature = "tch")]
struct DemoTch;

#[cfg(feature = "tch")]
impl DemoBackend for DemoTch {
    const NAME: &'static str = "tch";
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
}

struct Row {
    backend: &'static str,
    device: String,
    bytes_copied: u64,
    zero_copy: bool,
    nanos: u128,
}

fn run<B: DemoBackend>(samples: &mut Vec<(&'static str, HostArray)>) -> Result<Row> {
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
    #[cfg(feature = "candle")]
    rows.push(run::<DemoCandle>(&mut samples)?);
    #[cfg(feature = "burn")]
    rows.push(run::<DemoBurn>(&mut samples)?);
    #[cfg(feature = "tch")]
    rows.push(run::<DemoTch>(&mut samples)?);
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
