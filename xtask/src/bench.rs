//! Turns criterion's estimates (and the NumPy baselines) into the Markdown table of
//! benches/RESULTS.md: medians, ranges, GB/s and ratios to a baseline measured in the same run.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

/// How a benchmark run is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// `cargo xtask bench`: full sizes, the release-like `bench` profile; writes RESULTS.md.
    Full,
    /// `cargo xtask bench --quick`: small sizes and short runs, still optimised.
    Quick,
    /// What `cargo xtask ci` runs: the quick sizes built in the `dev` profile, which reuses the
    /// test build instead of compiling every framework optimised (about 20 minutes on CI's two
    /// cores). It shows that the benchmarks build and run; its times mean nothing.
    Smoke,
}

impl Run {
    /// Small sizes and short runs.
    pub fn quick(self) -> bool {
        self != Run::Full
    }

    /// The cargo profile the benchmarks build in.
    pub fn profile(self) -> &'static str {
        if self == Run::Smoke { "dev" } else { "bench" }
    }

    fn label(self) -> &'static str {
        match self {
            Run::Full => "",
            Run::Quick => " --quick (small sizes, short runs)",
            Run::Smoke => {
                " in `cargo xtask ci` (small sizes, unoptimised `dev` profile: a smoke run, not a measurement)"
            }
        }
    }
}

/// One measured benchmark: group, name, median and range in nanoseconds, bytes per iteration.
struct Row {
    group: String,
    name: String,
    median: f64,
    low: f64,
    high: f64,
    bytes: Option<f64>,
}

/// The number after `"key":` at or after `from` in a criterion JSON file.
fn number_after(text: &str, key: &str, from: usize) -> Option<f64> {
    let at = text[from..].find(&format!("\"{key}\""))? + from;
    let rest = &text[at + key.len() + 3..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

fn collect(dir: &Path, rows: &mut Vec<Row>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") && path.join("estimates.json").exists()
            {
                let estimates = std::fs::read_to_string(path.join("estimates.json"))?;
                let benchmark =
                    std::fs::read_to_string(path.join("benchmark.json")).unwrap_or_default();
                let Some(m) = estimates.find("\"median\"") else {
                    continue;
                };
                let median = number_after(&estimates, "point_estimate", m).unwrap_or(f64::NAN);
                let low = number_after(&estimates, "lower_bound", m).unwrap_or(f64::NAN);
                let high = number_after(&estimates, "upper_bound", m).unwrap_or(f64::NAN);
                let group = json_string(&benchmark, "group_id").unwrap_or_default();
                let function = json_string(&benchmark, "function_id").unwrap_or_default();
                let value = json_string(&benchmark, "value_str")
                    .map(|v| format!(" {v} MiB"))
                    .unwrap_or_default();
                let bytes = benchmark.find("\"Bytes\"").and_then(|at| {
                    benchmark[at + 8..]
                        .split(|c: char| !c.is_ascii_digit())
                        .find(|s| !s.is_empty())
                        .and_then(|s| s.parse().ok())
                });
                rows.push(Row {
                    group,
                    name: format!("{function}{value}"),
                    median,
                    low,
                    high,
                    bytes,
                });
            } else {
                collect(&path, rows)?;
            }
        }
    }
    Ok(())
}

fn json_string(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = text[at..].find('"')? + at;
    Some(text[at..end].to_string())
}

fn human(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.2} s", n / 1e9),
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        n => format!("{n:.0} ns"),
    }
}

/// Which row of a group is its baseline (the same size, where the case has one).
fn baseline<'a>(rows: &'a [Row], row: &Row) -> Option<&'a Row> {
    let size = row.name.split_once(' ').map(|(_, s)| s);
    let base = match row.group.as_str() {
        "contiguous_copy" | "transpose" | "permute_nchw_nhwc" => "memcpy_touched",
        "candle_to_host" => "native_flatten_to_vec1",
        "burn_to_host" => "native_to_data",
        "tch_to_host" => "native_vec_try_from",
        "candle_to_tch" => "vec_path",
        "compare" => "memcpy_both_2_threads",
        _ => return None,
    };
    rows.iter().find(|r| {
        r.group == row.group
            && r.name.split_once(' ').map_or(r.name.as_str(), |(f, _)| f) == base
            && r.name.split_once(' ').map(|(_, s)| s) == size
    })
}

/// The `name nanoseconds` lines a baseline script printed (benches/numpy_transpose.py,
/// benches/pyarrow_parquet.py); lines whose value is no number (versions) are skipped.
pub fn parse_baselines(output: &str) -> Vec<(String, f64)> {
    output
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// One Python-side timing from benches/python_handoff.py: per-call nanoseconds, and the case
/// of the same group it is compared with (the NumPy or PyTorch call doing the same job).
#[derive(Debug)]
pub struct PyRow {
    /// `python_handoff` (ferry beside NumPy/PyTorch), `python_torch`, `python_exchange` (C
    /// exchange API) or `python_extension` (argument types of the example extension).
    pub group: String,
    /// The call timed.
    pub case: String,
    /// Best per-call time in nanoseconds.
    pub ns: f64,
    /// The case of the same group this one is compared with.
    pub baseline: Option<String>,
    /// The median over rounds of this case's time over its baseline's in the same round.
    pub ratio: Option<f64>,
}

/// The Python timings the script printed (`row` lines) and its `versions` line.
pub fn parse_python(output: &str) -> (Vec<PyRow>, String) {
    let mut rows = Vec::new();
    let mut versions = String::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["row", group, case, ns, baseline, ratio] => {
                if let Ok(ns) = ns.parse() {
                    rows.push(PyRow {
                        group: group.to_string(),
                        case: case.to_string(),
                        ns,
                        baseline: Some(baseline.to_string()).filter(|b| !b.is_empty()),
                        ratio: ratio.parse().ok(),
                    });
                }
            }
            ["versions", v] => versions = v.to_string(),
            _ => {}
        }
    }
    (rows, versions)
}

/// The baseline row of a Python timing, and the ratio of their times: the median of the
/// round-by-round ratios where the script gave it, else the ratio of the best times.
fn py_baseline<'a>(rows: &'a [PyRow], row: &PyRow) -> Option<(&'a PyRow, f64)> {
    let name = row.baseline.as_deref()?;
    let base = rows
        .iter()
        .find(|r| r.group == row.group && r.case == name && r.baseline.is_none())?;
    Some((base, row.ratio.unwrap_or(row.ns / base.ns)))
}

/// A target from DEVELOPERS.md checked against this run: what, measured, wanted, met.
fn targets(
    rows: &[Row],
    python: &[PyRow],
    numpy: &[(String, f64)],
) -> Vec<(String, String, String, bool)> {
    let find = |group: &str, name: &str| rows.iter().find(|r| r.group == group && r.name == name);
    let mut out = Vec::new();
    for group in ["candle_to_host", "burn_to_host", "tch_to_host"] {
        if let Some(r) = rows
            .iter()
            .filter(|r| r.group == group && r.name.starts_with("ferry_view"))
            .max_by(|a, b| a.median.total_cmp(&b.median))
        {
            out.push((
                format!("{group}: CPU tensor → host view (largest size)"),
                human(r.median),
                "≤ 200 ns".into(),
                r.median <= 200.0,
            ));
        }
    }
    // DEVELOPERS.md's copy target, and the transpose targets of the speed issue (stricter than
    // DEVELOPERS.md's 0.4× on two threads and 0.25× on one).
    for (group, case, want) in [
        ("contiguous_copy", "ferry_to_contiguous_always 64 MiB", 0.8),
        ("transpose", "ferry_to_contiguous 64 MiB", 0.6),
        ("transpose", "ferry_to_contiguous_1_thread 64 MiB", 0.35),
    ] {
        if let (Some(ours), Some(base)) = (find(group, case), find(group, "memcpy_touched 64 MiB"))
        {
            let ratio = base.median / ours.median;
            let threads = if case.contains("1_thread") {
                "1 thread"
            } else {
                "2 threads"
            };
            out.push((
                format!("{group}: {case} ({threads})"),
                format!("{ratio:.2}× memcpy"),
                format!("≥ {want}× memcpy"),
                ratio >= want,
            ));
        }
    }
    if let Some(r) = rows
        .iter()
        .filter(|r| r.group == "arrow" && r.name.starts_with("tensor_column_export"))
        .max_by(|a, b| a.median.total_cmp(&b.median))
    {
        out.push((
            format!("arrow: {} (zero-copy tensor column)", r.name),
            human(r.median),
            "≤ 200 ns, any size".into(),
            r.median <= 200.0,
        ));
    }
    if let Some((_, theirs)) = numpy.iter().find(|(k, _)| k == "pyarrow_write_table_64mib") {
        // With glibc's malloc (what a Rust program gets by default), then with mimalloc, an
        // allocator that keeps freed memory as pyarrow's jemalloc pool does.
        for (group, allocator) in [("arrow", "glibc malloc"), ("arrow_mimalloc", "mimalloc")] {
            if let Some(ours) = find(group, "parquet_write_file 64 MiB") {
                let ratio = ours.median / theirs;
                out.push((
                    format!(
                        "arrow: parquet_write_file 64 MiB ({allocator}) against pyarrow's pq.write_table (jemalloc pool)"
                    ),
                    format!("{ratio:.2}× its time"),
                    "≤ 1.0×".into(),
                    ratio <= 1.0,
                ));
            }
        }
    }
    // ferry::testing's compare: one pass over both inputs (≥ 0.5× the bandwidth of reading both
    // with memcpy on two threads), and ≥ 10× faster than NumPy's assert_allclose.
    for (case, numpy_case) in [
        ("ferry_compare_equal", "numpy_assert_allclose_equal"),
        ("ferry_compare_1pct_off", "numpy_assert_allclose_1pct_off"),
    ] {
        let ours = rows
            .iter()
            .filter(|r| r.group == "compare" && r.name.starts_with(case))
            .max_by(|a, b| a.median.total_cmp(&b.median));
        let Some(ours) = ours else { continue };
        if let Some(base) = baseline(rows, ours) {
            let ratio = base.median / ours.median;
            out.push((
                format!("compare: {} (2 threads)", ours.name),
                format!("{ratio:.2}× memcpy of both"),
                "≥ 0.5× memcpy of both".into(),
                ratio >= 0.5,
            ));
        }
        if let Some((_, np)) = numpy.iter().find(|(k, _)| k == numpy_case) {
            let faster = np / ours.median;
            out.push((
                format!("compare: {} against NumPy's assert_allclose", ours.name),
                format!("{faster:.1}× faster"),
                "≥ 10× faster".into(),
                faster >= 10.0,
            ));
        }
    }
    if let Some(r) = find("dlpack", "export_import_round_trip") {
        out.push((
            "DLPack export + import round trip".into(),
            human(r.median),
            "≤ 100 ns".into(),
            r.median <= 100.0,
        ));
    }
    let is_target = |r: &&PyRow| {
        r.group == "python_handoff"
            || (r.group == "python_extension" && r.case.starts_with("take_ferry"))
    };
    for row in python.iter().filter(is_target) {
        if let Some((base, ratio)) = py_baseline(python, row) {
            out.push((
                format!("Python: `{}` against `{}`", row.case, base.case),
                format!("{ratio:.2}× its time"),
                "≤ 1.0×".into(),
                ratio <= 1.0,
            ));
        }
    }
    out
}

/// The Markdown report.
pub fn report(
    criterion: &Path,
    numpy: &[(String, f64)],
    python: &(Vec<PyRow>, String),
    run: Run,
) -> Result<String> {
    let mut rows = Vec::new();
    if criterion.exists() {
        collect(criterion, &mut rows)?;
    }
    rows.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    let mut out = String::new();
    writeln!(out, "# Benchmark results\n")?;
    writeln!(
        out,
        "Produced by `cargo xtask bench`{}. Machine: {}; {} CPUs. Ratios compare against a",
        run.label(),
        machine(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )?;
    writeln!(
        out,
        "baseline measured in the same run (× baseline time: lower is faster; for copies, bandwidth ratio = 1 / that).\n"
    )?;
    writeln!(
        out,
        "| group | case | median | range | GB/s | × baseline time |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for row in &rows {
        let gbs = row
            .bytes
            .map(|b| format!("{:.1}", b / row.median))
            .unwrap_or_default();
        let ratio = baseline(&rows, row)
            .map(|b| format!("{:.3}", row.median / b.median))
            .unwrap_or_default();
        writeln!(
            out,
            "| {} | {} | {} | {}–{} | {} | {} |",
            row.group,
            row.name,
            human(row.median),
            human(row.low),
            human(row.high),
            gbs,
            ratio
        )?;
    }
    if let Some((_, np)) = numpy
        .iter()
        .find(|(k, _)| k == "numpy_ascontiguousarray_transpose")
    {
        // The NumPy script transposes 4096² f32 (64 MiB; 512² with --quick, 1 MiB).
        let size = if run.quick() { "1 MiB" } else { "64 MiB" };
        let ours = rows
            .iter()
            .find(|r| r.group == "transpose" && r.name == format!("ferry_to_contiguous {size}"));
        write!(
            out,
            "\nNumPy `np.ascontiguousarray(a.T)` on the same machine and size: {}",
            human(*np)
        )?;
        match ours {
            Some(ours) => writeln!(
                out,
                "; ferry's transpose takes {:.3}× NumPy's time ({:.1}× faster).",
                ours.median / np,
                np / ours.median
            )?,
            None => writeln!(out, ".")?,
        }
    }
    // benches/compare_baselines.py: NumPy's and torch's assertions over the compare group's
    // arrays (64 MiB each; 1 MiB with --quick).
    let size = if run.quick() { "1 MiB" } else { "64 MiB" };
    for (case, label) in [("equal", "equal"), ("1pct_off", "1% of elements off")] {
        let ours = rows
            .iter()
            .find(|r| r.group == "compare" && r.name == format!("ferry_compare_{case} {size}"));
        let np = numpy
            .iter()
            .find(|(k, _)| *k == format!("numpy_assert_allclose_{case}"));
        let torch = numpy
            .iter()
            .find(|(k, _)| *k == format!("torch_assert_close_{case}"));
        if let (Some(ours), Some((_, np)), Some((_, torch))) = (ours, np, torch) {
            writeln!(
                out,
                "
Two {size} f32 arrays, {label}: `numpy.testing.assert_allclose` {}, `torch.testing.assert_close` {}; ferry's `compare` {} ({:.1}× faster than NumPy's, {:.1}× than torch's).",
                human(*np),
                human(*torch),
                human(ours.median),
                np / ours.median,
                torch / ours.median
            )?;
        }
    }
    // benches/pyarrow_parquet.py writes the Arrow group's column at each of its sizes.
    for (key, theirs) in numpy {
        let Some(mib) = key
            .strip_prefix("pyarrow_write_table_")
            .and_then(|k| k.strip_suffix("mib"))
        else {
            continue;
        };
        let size = format!("{mib} MiB");
        let ours = |group: &str| {
            rows.iter()
                .find(|r| r.group == group && r.name == format!("parquet_write_file {size}"))
        };
        write!(
            out,
            "\npyarrow `pq.write_table` of the same {size} tensor column with the same settings (uncompressed, no dictionary and no statistics for the tensor column) on the same machine: {}",
            human(*theirs)
        )?;
        match ours("arrow") {
            Some(ours) => write!(
                out,
                "; ferry's `parquet::write_file` takes {:.2}× pyarrow's time with glibc's malloc",
                ours.median / theirs
            )?,
            None => write!(out, "")?,
        }
        match ours("arrow_mimalloc") {
            Some(ours) => writeln!(
                out,
                ", {:.2}× with mimalloc (`benches/parquet_alloc.rs`: an allocator that keeps freed memory, as pyarrow's jemalloc pool does; glibc hands each encoded page's freed buffers back to the OS and the next page faults them in again).",
                ours.median / theirs
            )?,
            None => writeln!(out, ".")?,
        }
    }
    let (py_rows, versions) = python;
    if !py_rows.is_empty() {
        writeln!(
            out,
            "\n## Python hand-off\n\n`benches/python_handoff.py` in one process against the installed wheel ({versions}); best per-call time of 41 rounds of 2,000 calls, each case's rounds interleaved with its baseline's (which goes first alternates); \"× baseline time\" is the median over the rounds of the case's time over its baseline's in the same round, steadier than the ratio of the two best rounds on a machine that changes speed between rounds. `python_torch` times ferry's import (a copy) of PyTorch tensors made anew each call and without PyTorch's C exchange table (which `import tvm_ffi` publishes on PyTorch 2.9, as PyTorch ≥ 2.10 does itself), beside NumPy's import of the same tensors; `python_exchange` times the same consumer given a `HostArray` (whose type has `__dlpack_c_exchange_api__`) and given an object without the table whose `__dlpack__` is the array's own. `python_extension` (`benches/python_extension.py`) times a `#[pyfunction]` of the example extension (`examples/pyo3-extension`, feature `bench`) that only takes its argument: ferry's `ReadonlyArray<f32, Ix2>` beside rust-numpy 0.30's `PyReadonlyArray2<f32>` for a 64×64 float32 NumPy array, and beside `np.from_dlpack` for a 64×64 PyTorch tensor (ferry copies it: 16 KiB); `take_object` is the call alone (`&Bound<PyAny>`).\n"
        )?;
        writeln!(
            out,
            "| group | case | per call | baseline | × baseline time |"
        )?;
        writeln!(out, "|---|---|---|---|---|")?;
        for row in py_rows.iter().filter(|r| r.baseline.is_some()) {
            let (base, ratio) = py_baseline(py_rows, row)
                .map(|(b, r)| (format!("`{}` {}", b.case, human(b.ns)), format!("{r:.2}")))
                .unwrap_or_default();
            writeln!(
                out,
                "| {} | `{}` | {} | {base} | {ratio} |",
                row.group,
                row.case,
                human(row.ns)
            )?;
        }
    }
    let checks = targets(&rows, py_rows, numpy);
    if !checks.is_empty() {
        writeln!(out, "\n## Targets\n")?;
        writeln!(out, "| target | measured | wanted | met |")?;
        writeln!(out, "|---|---|---|---|")?;
        for (what, measured, wanted, met) in checks {
            writeln!(
                out,
                "| {what} | {measured} | {wanted} | {} |",
                if met { "yes" } else { "**no**" }
            )?;
        }
    }
    writeln!(out, "\n{CUDA_SECTION}")?;
    Ok(out)
}

/// RESULTS.md's CUDA section: those figures come from a GPU machine, not from this run.
const CUDA_SECTION: &str = "## CUDA\n\nNot measured here: this machine has no GPU. `cargo xtask gpu-bundle` builds the CUDA benchmarks (`tests/benches/cuda.rs`: 256 MiB device → host beside `cudaMemcpy` into pinned memory, target ≥ 0.8×; a 1 MiB narrow of a 1 GiB tensor beside candle's `to_device(Cpu)` and Burn's `into_data`), and the bundle's `run.sh` writes their table into `results.md` on the GPU machine.";

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
