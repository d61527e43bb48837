//! CUDA benchmarks (`--features cuda` with candle or burn), built by `cargo xtask gpu-bundle`
//! (`cargo test --release --bench cuda`, which reuses the test build) and run by its `run.sh`
//! on a GPU: device → host of 256 MiB beside `cudaMemcpy` into pinned
//! memory, and a 1 MiB narrow of a 1 GiB tensor beside the framework's own read. Each line is
//! a ratio to a baseline timed in the same process; best of several runs, after a warm-up.

#![cfg_attr(not(any(feature = "candle", feature = "burn")), allow(dead_code))]

use std::hint::black_box;
use std::time::{Duration, Instant};

/// The best time of `runs` calls of `f`, after one warm-up call.
fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .expect("at least one run")
}

/// One result line: `cuda | case | ferry | baseline | ratio | target`, in milliseconds.
fn report(case: &str, ferry: Duration, baseline_name: &str, baseline: Duration, target: &str) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "cuda | {case} | ferry {:.3} ms | {baseline_name} {:.3} ms | {:.2}× | {target}",
        ms(ferry),
        ms(baseline),
        ms(baseline) / ms(ferry),
    );
}

const RUNS: usize = 10;

#[cfg(feature = "candle")]
fn candle() {
    use candle_core::{DType, Device, Storage, Tensor};

    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let Device::Cuda(cuda) = &gpu else {
        unreachable!("new_cuda makes a CUDA device")
    };
    let stream = cuda.cuda_stream();

    // 256 MiB device → host: ferry's span copy (pinned destination) against one cudaMemcpy
    // of the same bytes into pinned memory allocated once.
    let n = 64 << 20;
    let t = Tensor::zeros(n, DType::F32, &gpu).unwrap();
    let memcpy = {
        let (storage, _layout) = t.storage_and_layout();
        let Storage::Cuda(storage) = &*storage else {
            unreachable!("a tensor on a CUDA device has CUDA storage")
        };
        let slice = storage.as_cuda_slice::<f32>().unwrap();
        // SAFETY: only written (by the copies below), never read.
        let mut pinned = unsafe { stream.context().alloc_pinned::<f32>(n) }.unwrap();
        best(RUNS, || {
            stream.memcpy_dtoh(slice, &mut pinned).unwrap();
            stream.synchronize().unwrap();
        })
    };
    let ferry = best(RUNS, || {
        black_box(ferry_candle::to_host(black_box(&t)).unwrap());
    });
    report(
        "candle: 256 MiB device → host",
        ferry,
        "pinned cudaMemcpy",
        memcpy,
        "≥ 0.8",
    );

    // A 1 MiB narrow of a 1 GiB tensor: ferry copies the span, candle's to_device(Cpu) the
    // narrowed tensor as candle reads it.
    let big = Tensor::zeros(256 << 20, DType::F32, &gpu).unwrap();
    let narrow = big.narrow(0, 100 << 20, 1 << 18).unwrap();
    let ferry = best(RUNS, || {
        black_box(ferry_candle::to_host(black_box(&narrow)).unwrap());
    });
    let own = best(RUNS, || {
        black_box(narrow.to_device(&Device::Cpu).unwrap());
    });
    report(
        "candle: 1 MiB narrow of 1 GiB → host",
        ferry,
        "to_device(Cpu)",
        own,
        "≥ 1.0",
    );
}

#[cfg(feature = "burn")]
fn burn() {
    use burn::tensor::{Device, Tensor};

    let gpu = Device::cuda(0);
    let whole = Tensor::<1>::zeros([64 << 20], &gpu);
    let big = Tensor::<1>::zeros([256 << 20], &gpu);
    let narrow = big.narrow(0, 100 << 20, 1 << 18);
    for (case, t) in [
        ("burn: 256 MiB device → host", &whole),
        ("burn: 1 MiB narrow of 1 GiB → host", &narrow),
    ] {
        let ferry = best(RUNS, || {
            black_box(ferry::burn_adapter::to_host(black_box(t)).unwrap());
        });
        let own = best(RUNS, || {
            black_box(t.clone().into_data());
        });
        report(case, ferry, "into_data", own, "≥ 1.0");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a listing run (`--list`) has nothing to list.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    #[cfg(feature = "candle")]
    candle();
    #[cfg(feature = "burn")]
    burn();
}
