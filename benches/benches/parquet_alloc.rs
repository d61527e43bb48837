//! The Parquet write of `host.rs`'s Arrow group, in a process whose global allocator keeps
//! freed memory for reuse (mimalloc), as pyarrow's jemalloc pool does: arrow-rs's column writer
//! allocates fresh buffers of about a page (1 MiB) for every page it encodes, and glibc's
//! malloc hands each freed one back to the OS (a large one is unmapped, the heap's top is
//! trimmed), so the next page faults its memory in again. Compared with pyarrow's
//! `pq.write_table` of the same data (benches/pyarrow_parquet.py, in the same run).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferry::HostArray;
use ferry::arrow::{TensorColumn, parquet, record_batch};
use ferry_benches::{config, quick};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The 32×32 f32 tensor column of `host.rs`'s `arrow_columns` (i * 1e-3), written to Parquet.
fn parquet_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("arrow_mimalloc");
    let mibs: &[usize] = if quick() { &[1] } else { &[1, 64, 256] };
    let path = std::env::temp_dir().join("ferry-bench-mimalloc.parquet");
    for &mib in mibs {
        let rows = mib * 256;
        let values: Vec<f32> = (0..rows * 1024).map(|i| i as f32 * 1e-3).collect();
        let batch = HostArray::from_vec(vec![rows, 32, 32], values).unwrap();
        let table = record_batch([TensorColumn::from_batch("x", &batch).unwrap()]).unwrap();
        g.throughput(Throughput::Bytes((mib << 20) as u64));
        g.bench_function(BenchmarkId::new("parquet_write_file", mib), |b| {
            b.iter(|| parquet::write_file(&path, std::slice::from_ref(&table)).unwrap())
        });
    }
    let _ = std::fs::remove_file(&path);
    g.finish();
}

criterion_group! { name = benches; config = config(); targets = parquet_write }
criterion_main!(benches);
