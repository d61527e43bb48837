//! Criterion benchmarks: ferry against memcpy and each framework's native host read. Every
//! group holds its baseline, so `cargo xtask bench` reports ratios measured in the same run.
//!
//! `FERRY_BENCH_QUICK=1` shrinks the arrays so CI can run the whole file in seconds.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferry::{CopyPolicy, HostArray};
use ferry_benches::{config, quick};

/// Side of a square f32 matrix of about `mib` MiB.
fn side(mib: usize) -> usize {
    (((mib << 20) / 4) as f64).sqrt() as usize
}

fn sizes() -> Vec<usize> {
    if quick() { vec![1] } else { vec![1, 64] }
}

fn contiguous_copy(c: &mut Criterion) {
    let mut g = c.benchmark_group("contiguous_copy");
    for mib in sizes() {
        let n = (mib << 20) / 4;
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut touched = vec![0f32; n];
        let host = HostArray::from_vec(vec![n], src.clone()).unwrap();
        g.throughput(Throughput::Bytes((n * 4) as u64));
        g.bench_with_input(BenchmarkId::new("memcpy_touched", mib), &mib, |b, _| {
            b.iter(|| touched.copy_from_slice(black_box(&src)))
        });
        g.bench_with_input(BenchmarkId::new("vec_to_vec", mib), &mib, |b, _| {
            b.iter(|| black_box(&src).to_vec())
        });
        g.bench_with_input(
            BenchmarkId::new("ferry_to_contiguous_always", mib),
            &mib,
            |b, _| b.iter(|| black_box(&host).to_contiguous(CopyPolicy::Always).unwrap()),
        );
    }
    g.finish();
}

/// Transposed f32 matrices to row-major: memcpy of the same bytes (the bound: a transpose moves
/// as many), ndarray, and ferry on two threads and on one; plus a 3-D permutation.
fn transpose(c: &mut Criterion) {
    let mut g = c.benchmark_group("transpose");
    let sizes = if quick() { vec![1] } else { vec![1, 64, 256] };
    for mib in sizes {
        let s = side(mib);
        let src: Vec<f32> = (0..s * s).map(|i| i as f32).collect();
        let mut touched = vec![0f32; s * s];
        let array = ferry::ndarray::Array2::from_shape_vec((s, s), src.clone()).unwrap();
        let host = HostArray::from_array(array.clone().reversed_axes().into_dyn());
        g.throughput(Throughput::Bytes((s * s * 4) as u64));
        g.bench_function(BenchmarkId::new("memcpy_touched", mib), |b| {
            b.iter(|| touched.copy_from_slice(black_box(&src)))
        });
        if mib <= 64 {
            g.bench_function(BenchmarkId::new("ndarray_as_standard_layout", mib), |b| {
                b.iter(|| black_box(&array).t().as_standard_layout().into_owned())
            });
        }
        for (name, threads) in [
            ("ferry_to_contiguous", 0),
            ("ferry_to_contiguous_1_thread", 1),
        ] {
            ferry::set_copy_threads(threads);
            g.bench_function(BenchmarkId::new(name, mib), |b| {
                b.iter(|| {
                    black_box(&host)
                        .to_contiguous(CopyPolicy::IfNeeded)
                        .unwrap()
                })
            });
        }
        ferry::set_copy_threads(0);
    }
    g.finish();
    // NCHW -> NHWC of 64×256×32×32 f32 (64 MiB; 8×64×16×16 with --quick), against memcpy.
    let mut g = c.benchmark_group("permute_nchw_nhwc");
    let (n, ch, h, w) = if quick() {
        (8, 64, 16, 16)
    } else {
        (64, 256, 32, 32)
    };
    let len = n * ch * h * w;
    let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let mut touched = vec![0f32; len];
    let nchw = ferry::ndarray::Array4::from_shape_vec((n, ch, h, w), src.clone()).unwrap();
    let nhwc = HostArray::from_array(nchw.permuted_axes([0, 2, 3, 1]).into_dyn());
    let mib = (len * 4) >> 20;
    g.throughput(Throughput::Bytes((len * 4) as u64));
    g.bench_function(BenchmarkId::new("memcpy_touched", mib), |b| {
        b.iter(|| touched.copy_from_slice(black_box(&src)))
    });
    g.bench_function(BenchmarkId::new("ferry_to_contiguous", mib), |b| {
        b.iter(|| {
            black_box(&nhwc)
                .to_contiguous(CopyPolicy::IfNeeded)
                .unwrap()
        })
    });
    g.finish();
}

fn dlpack_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("dlpack");
    let host = HostArray::from_vec(vec![64, 64], vec![1f32; 4096]).unwrap();
    g.bench_function("export_import_round_trip", |b| {
        b.iter(|| black_box(&host).to_dlpack().into_host().unwrap())
    });
    g.bench_function("export_import_raw_pointer", |b| {
        b.iter(|| {
            let raw = black_box(&host).to_dlpack().into_raw();
            // SAFETY: a pointer ferry just exported and nobody else owns.
            unsafe { ferry::DlpackTensor::from_raw(raw) }
                .unwrap()
                .into_host()
                .unwrap()
        })
    });
    g.finish();
}

#[cfg(feature = "candle")]
fn candle_to_host(c: &mut Criterion) {
    use candle_core::{Device, Tensor};
    let mut g = c.benchmark_group("candle_to_host");
    for mib in sizes() {
        let s = side(mib);
        let t = Tensor::arange(0f32, (s * s) as f32, &Device::Cpu)
            .unwrap()
            .reshape((s, s))
            .unwrap();
        g.bench_with_input(
            BenchmarkId::new("native_flatten_to_vec1", mib),
            &mib,
            |b, _| {
                b.iter(|| {
                    black_box(&t)
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("ferry_view", mib), &mib, |b, _| {
            b.iter(|| ferry::to_host(black_box(&t)).unwrap())
        });
    }
    g.finish();
}

#[cfg(not(feature = "candle"))]
fn candle_to_host(_: &mut Criterion) {}

#[cfg(feature = "burn")]
fn burn_to_host(c: &mut Criterion) {
    use burn::tensor::{Device, Tensor, TensorData};
    let mut g = c.benchmark_group("burn_to_host");
    for mib in sizes() {
        let s = side(mib);
        let data = TensorData::new((0..s * s).map(|i| i as f32).collect::<Vec<_>>(), [s, s]);
        let t = Tensor::<2>::from_data(data, &Device::flex());
        g.bench_with_input(BenchmarkId::new("native_to_data", mib), &mib, |b, _| {
            b.iter(|| black_box(&t).to_data())
        });
        g.bench_with_input(BenchmarkId::new("ferry_view", mib), &mib, |b, _| {
            b.iter(|| ferry::to_host(black_box(&t)).unwrap())
        });
    }
    g.finish();
}

#[cfg(not(feature = "burn"))]
fn burn_to_host(_: &mut Criterion) {}

#[cfg(feature = "tch")]
fn tch_to_host(c: &mut Criterion) {
    use tch::{Device, Kind, Tensor};
    let mut g = c.benchmark_group("tch_to_host");
    for mib in sizes() {
        let s = side(mib) as i64;
        let t = Tensor::arange(s * s, (Kind::Float, Device::Cpu)).reshape([s, s]);
        let mut touched = vec![0f32; (s * s) as usize];
        g.bench_with_input(
            BenchmarkId::new("native_vec_try_from", mib),
            &mib,
            |b, _| b.iter(|| Vec::<f32>::try_from(black_box(&t).flatten(0, -1)).unwrap()),
        );
        g.bench_with_input(
            BenchmarkId::new("native_copy_data_touched", mib),
            &mib,
            |b, _| b.iter(|| black_box(&t).copy_data(&mut touched, (s * s) as usize)),
        );
        g.bench_with_input(BenchmarkId::new("ferry_view", mib), &mib, |b, _| {
            b.iter(|| ferry::to_host(black_box(&t)).unwrap())
        });
    }
    g.finish();
}

#[cfg(not(feature = "tch"))]
fn tch_to_host(_: &mut Criterion) {}

/// Framework → framework: ferry over DLPack against the copy-through-Vec path users write today.
#[cfg(all(feature = "candle", feature = "tch"))]
fn candle_to_tch(c: &mut Criterion) {
    use candle_core::{Device, Tensor};
    let mut g = c.benchmark_group("candle_to_tch");
    let mib = if quick() { 1 } else { 64 };
    let s = side(mib);
    let t = Tensor::arange(0f32, (s * s) as f32, &Device::Cpu)
        .unwrap()
        .reshape((s, s))
        .unwrap();
    g.bench_function(BenchmarkId::new("vec_path", mib), |b| {
        b.iter(|| {
            let v = black_box(&t)
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            tch::Tensor::from_slice(&v).reshape([s as i64, s as i64])
        })
    });
    g.bench_function(BenchmarkId::new("ferry_convert", mib), |b| {
        b.iter(|| ferry::convert::<ferry::Tch>(black_box(&t), &tch::Device::Cpu).unwrap())
    });
    g.finish();
}

#[cfg(not(all(feature = "candle", feature = "tch")))]
fn candle_to_tch(_: &mut Criterion) {}

/// Arrow: a batch as an `arrow.fixed_shape_tensor` column (zero-copy: the time does not grow
/// with the size), and the column written to a Parquet file, beside pyarrow's `pq.write_table`
/// of the same data (benches/pyarrow_parquet.py, in the same run).
fn arrow_columns(c: &mut Criterion) {
    use ferry::arrow::{TensorColumn, parquet, record_batch};
    let mut g = c.benchmark_group("arrow");
    // 1, 64 and 256 MiB (1 with --quick): the Parquet write is compared with pyarrow's at each.
    let mut mibs = sizes();
    if !quick() {
        mibs.push(256);
    }
    let batches: Vec<(usize, HostArray)> = mibs
        .into_iter()
        .map(|mib| {
            let rows = mib * 256; // 4 KiB a row
            // Same values as the pyarrow script: i * 1e-3 in f32.
            let values: Vec<f32> = (0..rows * 1024).map(|i| i as f32 * 1e-3).collect();
            (
                mib,
                HostArray::from_vec(vec![rows, 32, 32], values).unwrap(),
            )
        })
        .collect();
    for (mib, batch) in &batches {
        // Export and drop of the column (keeping outputs to drop later costs more).
        g.bench_function(BenchmarkId::new("tensor_column_export", mib), |b| {
            b.iter(|| TensorColumn::from_batch("x", black_box(batch)).unwrap())
        });
    }
    let path = std::env::temp_dir().join("ferry-bench.parquet");
    for (mib, batch) in &batches {
        let table = record_batch([TensorColumn::from_batch("x", batch).unwrap()]).unwrap();
        g.throughput(Throughput::Bytes((mib << 20) as u64));
        g.bench_function(BenchmarkId::new("parquet_write_file", mib), |b| {
            b.iter(|| parquet::write_file(&path, std::slice::from_ref(&table)).unwrap())
        });
    }
    let _ = std::fs::remove_file(&path);
    g.finish();
}

/// `ferry::testing::compare` of two f32 arrays (equal; 1% of the elements off; `actual`
/// transposed in memory against a row-major `expected`), beside the time to read both with
/// memcpy on two threads, the bound of one pass over both inputs. NumPy's
/// `assert_allclose` and torch's `assert_close` of the same data are timed by
/// benches/compare_baselines.py in the same run.
fn compare(c: &mut Criterion) {
    use ferry::testing::{Tolerance, compare};
    let mut g = c.benchmark_group("compare");
    for mib in sizes() {
        let s = side(mib);
        let n = s * s;
        let expected: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.25).collect();
        let mut off = expected.clone();
        for v in off.iter_mut().step_by(100) {
            *v += 1.0;
        }
        let (mut to_a, mut to_e) = (vec![0f32; n], vec![0f32; n]);
        let e = HostArray::from_vec(vec![s, s], expected.clone()).unwrap();
        let equal = HostArray::from_vec(vec![s, s], expected.clone()).unwrap();
        let one_percent = HostArray::from_vec(vec![s, s], off).unwrap();
        // The same logical values as `e`, stored column-major.
        let transposed = HostArray::from_array(
            ferry::ndarray::Array2::from_shape_vec((s, s), expected.clone())
                .unwrap()
                .reversed_axes()
                .as_standard_layout()
                .into_owned()
                .reversed_axes()
                .into_dyn(),
        );
        g.throughput(Throughput::Bytes((2 * n * 4) as u64));
        g.bench_function(BenchmarkId::new("memcpy_both_2_threads", mib), |b| {
            b.iter(|| {
                let half = n / 2;
                let (a0, a1) = to_a.split_at_mut(half);
                let (e0, e1) = to_e.split_at_mut(half);
                std::thread::scope(|scope| {
                    scope.spawn(|| {
                        a0.copy_from_slice(black_box(&expected[..half]));
                        e0.copy_from_slice(black_box(&expected[..half]));
                    });
                    a1.copy_from_slice(black_box(&expected[half..]));
                    e1.copy_from_slice(black_box(&expected[half..]));
                });
            })
        });
        for (name, actual) in [
            ("ferry_compare_equal", &equal),
            ("ferry_compare_1pct_off", &one_percent),
            ("ferry_compare_transposed", &transposed),
        ] {
            g.bench_function(BenchmarkId::new(name, mib), |b| {
                b.iter(|| compare(black_box(actual), &e, &Tolerance::default()).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group! { name = benches; config = config(); targets = contiguous_copy, transpose, dlpack_round_trip, candle_to_host, burn_to_host, tch_to_host, candle_to_tch, arrow_columns, compare }
criterion_main!(benches);
