//! `cargo xtask demo`: the three scenarios (visualise, custom function, legacy code) on every
//! backend this build enables, ending with a table of what ferry copied.

use std::time::Instant;

use ferry::ndarray::{ArrayD, ArrayViewD, Axis};
use ferry::{HostArray, Result};

/// Legacy analysis code that only knows ndarray.
fn mean(a: &ArrayViewD<'_, f64>) -> f64 {
    a.sum() / a.len() as f64
}

/// A plain ndarray function: the sum of each row.
fn row_sums(a: &ArrayViewD<'_, f32>) -> ArrayD<f32> {
    a.sum_axis(Axis(1))
}

struct Row {
    backend: &'static str,
    device: String,
    bytes_copied: u64,
    zero_copy: bool,
    nanos: u128,
}

fn core_scenarios() -> Result<Row> {
    // Scenario 1 (data for a plot): 100×2 samples, here from a deterministic generator.
    let samples: Vec<f32> = (0..200)
        .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
        .collect();
    let start = Instant::now();
    let host = HostArray::from_vec(vec![100, 2], samples)?;
    let view = host.view::<f32>()?;
    let nanos = start.elapsed().as_nanos();
    println!(
        "[core] 100x2 samples on host: first row {:?}",
        view.row_view(0)
    );

    // Scenario 2: a custom ndarray function over a 5×5 array.
    let grid = HostArray::from_vec(vec![5, 5], (0..25).map(|i| i as f32).collect())?;
    println!(
        "[core] row sums of 0..25 as 5x5: {}",
        row_sums(&grid.view::<f32>()?)
    );

    // Scenario 3: legacy code taking an f64 view.
    let legacy = HostArray::from_vec(vec![2, 2], vec![1.0f64, 2.0, 3.0, 4.0])?;
    println!(
        "[core] mean of [[1,2],[3,4]]: {}",
        mean(&legacy.view::<f64>()?)
    );

    Ok(Row {
        backend: "core (Vec)",
        device: host.device().to_string(),
        bytes_copied: host.bytes_copied() + grid.bytes_copied() + legacy.bytes_copied(),
        zero_copy: host.copies() == 0,
        nanos,
    })
}

trait RowView {
    fn row_view(&self, i: usize) -> Vec<f32>;
}

impl RowView for ArrayViewD<'_, f32> {
    fn row_view(&self, i: usize) -> Vec<f32> {
        self.index_axis(Axis(0), i).iter().copied().collect()
    }
}

fn main() -> Result<()> {
    let rows = vec![core_scenarios()?];
    println!();
    println!(
        "{:<12} {:<8} {:>12} {:>10} {:>14}",
        "backend", "device", "bytes copied", "zero-copy", "time to host"
    );
    for r in rows {
        println!(
            "{:<12} {:<8} {:>12} {:>10} {:>11} ns",
            r.backend,
            r.device,
            r.bytes_copied,
            if r.zero_copy { "yes" } else { "no" },
            r.nanos
        );
    }
    Ok(())
}
