use std::time::Instant;
use ferry_arrow::{FileFormat, TensorColumn, TensorWriter, record_batch};
use ferry_core::HostArray;

fn main() {
    let mib: usize = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(64);
    let rows = mib * 256;
    let values: Vec<f32> = (0..rows * 1024).map(|i| i as f32 * 1e-3).collect();
    let x = HostArray::from_vec(vec![rows, 32, 32], values).unwrap();
    let batch = record_batch([TensorColumn::from_batch("x", &x).unwrap()]).unwrap();
    let path = std::env::temp_dir().join("pq_time.parquet");
    for rg in [128usize << 20, 6 << 20, 4 << 20, 3 << 20, 2 << 20, 1 << 20] {
        let mut times = Vec::new();
        for _ in 0..9 {
            let t = Instant::now();
            let mut w = TensorWriter::create(&path, FileFormat::Parquet, batch.schema()).unwrap().with_row_group_bytes(rg);
            w.write(&batch).unwrap();
            w.finish().unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("row_group {} MiB: median {:.2} ms", rg >> 20, times[4]);
    }
}
