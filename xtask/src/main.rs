//! Project automation: `cargo xtask ci` (everything CI checks), `cargo xtask demo` (the main
//! job), `cargo xtask bench`, `cargo xtask fuzz`, `cargo xtask gpu-bundle`, `cargo xtask
//! layers`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, bail};

mod bench;
mod gpu_bundle;
mod layers;
mod provision;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  demo [--no-engines]
                  run the scenarios on every backend: plots, custom and legacy functions, a
                  cross-backend comparison, and a Parquet dataset that pyarrow, DuckDB,
                  Polars, DataFusion and Ray Data then read (--no-engines: skip that step and
                  its Python packages)
  ci              fmt check, ferry-python's layers, clippy -D warnings, all tests (Rust and
                  Python, the manylinux2014 wheel), pip install, the demo with its engine
                  step, fuzzing, docs with warnings denied, cargo package, a bench smoke run
  layers          check that ferry-python's modules use each other downwards only (the
                  layers in xtask/src/layers.rs) and that only its raw.rs calls CPython
  bench [--quick] run the criterion benchmarks and the Python hand-off timings and write
                  benches/RESULTS.md (--quick: small sizes, printed only; --report: rewrite
                  the table from the last criterion run without rerunning it)
  fuzz [--cases N] run the DLPack importer property fuzzer (default 100000 cases)
  python [ARGS]   build the `ferry` wheel (maturin, release, abi3), install it into a fresh
                  venv with the provisioned NumPy and PyTorch, run the Python-side tests
                  (pytest ARGS) and check the type stubs with mypy --strict; then the
                  example extension's (examples/pyo3-extension) wheel, tests and stubs
  package [--allow-dirty]
                  `cargo package` every library crate in dependency order, each built from
                  its .crate alone (what `cargo publish` would upload)
  pip-check       `pip install ./crates/ferry-python`, then ./examples/pyo3-extension, into
                  a new venv and call them
  valgrind        run every test that needs no libtorch under valgrind memcheck, then the tch
                  tests, then the Python exchange-API tests against the installed wheel and
                  the example extension's tests
  libtorch        provision libtorch 2.9.0 from PyPI (cached) and print its folder
  nvcc            provision nvcc from PyPI (cached) and print its CUDA home
  gpu-bundle      build the CUDA tests and benchmarks (candle, burn) and the Python stand-in
                  for tch into target/gpu-bundle/, to run on a GPU machine with its run.sh";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("layers") => layers::check(&root),
        Some("demo") => demo(!args.iter().any(|a| a == "--no-engines")),
        Some("bench") => bench(
            if args.iter().any(|a| a == "--quick") {
                bench::Run::Quick
            } else {
                bench::Run::Full
            },
            args.iter().any(|a| a == "--report"),
        ),
        Some("fuzz") => fuzz(parse_cases(&args)?),
        Some("valgrind") => valgrind(),
        Some("python") => {
            build_env()?;
            let mut totals = Totals::default();
            let extra: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            python_tests(&extra, &mut totals)?;
            example_extension_tests(&[], &mut totals)
        }
        Some("pip-check") => pip_install_check(),
        Some("package") => {
            let _ = LIBTORCH.set(provision::libtorch()?);
            package_check(args.iter().any(|a| a == "--allow-dirty"))
        }
        Some("libtorch") => {
            println!("{}", provision::libtorch()?.display());
            Ok(())
        }
        Some("nvcc") => {
            println!("{}", provision::nvcc()?.display());
            Ok(())
        }
        Some("gpu-bundle") => {
            build_env()?;
            gpu_bundle::gpu_bundle()
        }
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn root_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn parse_cases(args: &[String]) -> Result<u32> {
    match args.iter().position(|a| a == "--cases") {
        Some(i) => args
            .get(i + 1)
            .context("--cases needs a number")?
            .parse()
            .context("--cases needs a number"),
        None => Ok(100_000),
    }
}

/// Runs a command, echoing it, failing on a non-zero exit.
fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if let Some(libtorch) = LIBTORCH.get() {
        cmd.env("LIBTORCH", libtorch);
    }
    if let Some((_, site)) = PYTHON.get() {
        // Read at run time by the embedded-interpreter tests (tests/it/python.rs).
        cmd.env("FERRY_PYTHON_SITE", site);
    }
    cmd
}

/// Test totals parsed from libtest's `test result:` lines.
#[derive(Default, Debug)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo test` with `args`, streaming its output and adding up the results.
fn run_tests(args: &[&str], env: &[(&str, &str)], totals: &mut Totals) -> Result<()> {
    let mut cmd = cargo();
    cmd.arg("test")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped());
    eprintln!("$ {}", show(&cmd));
    let mut child = cmd.spawn().context("could not start cargo test")?;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let num = |key: &str| -> u64 {
                rest.split([';', '.'])
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(key)
                            .map(|n| n.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0)
            };
            totals.passed += num(" passed");
            totals.failed += num(" failed");
            totals.ignored += num(" ignored");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`cargo test {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

/// The libtorch folder every later cargo command builds tch against.
static LIBTORCH: OnceLock<PathBuf> = OnceLock::new();

/// The provisioned Python (torch, NumPy, safetensors, pytest) and its site-packages folder.
static PYTHON: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();

/// Provisions what the builds and tests need (libtorch for tch, the Python packages for the
/// Python hand-off tests) before any cargo command runs.
fn build_env() -> Result<()> {
    let libtorch = provision::libtorch()?;
    let _ = LIBTORCH.set(libtorch);
    let _ = PYTHON.set(provision::python_env()?);
    Ok(())
}

/// The venv the Python tests and benchmarks run in, made once per xtask run by [`wheel_venv`].
static WHEEL_VENV: OnceLock<PathBuf> = OnceLock::new();

/// The manylinux policy the `ferry` wheel is built for: glibc 2.17 and later (RHEL 7+,
/// Debian 9+, Ubuntu 18.04+, Amazon Linux 2), which maturin reaches by linking with zig.
const WHEEL_PLATFORM: &str = "manylinux_2_17_x86_64";

/// Builds the `ferry` wheel as users get it (maturin, release, abi3, manylinux2014 through
/// zig) into `target/python/wheels`, checks its platform tag with auditwheel
/// ([`audit_wheel`]), and installs it into a fresh venv (`target/python/venv`) whose other
/// packages — the pinned NumPy, PyTorch, pytest and tvm-ffi — come from the provisioned Python
/// through a `.pth` line; returns the venv's python.
fn wheel_venv() -> Result<PathBuf> {
    if let Some(python) = WHEEL_VENV.get() {
        return Ok(python.clone());
    }
    let tools = provision::python_tools()?;
    let (provisioned, site) = PYTHON.get().context("python not provisioned")?;
    let wheels = root_target().join("python/wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    let start = Instant::now();
    // maturin finds zig as `python3 -m ziglang` of the tools' venv, first on PATH.
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new(tools.join("maturin"))
        .args([
            "build",
            "--release",
            "--zig",
            "--compatibility",
            "manylinux2014",
        ])
        .arg("--manifest-path")
        .arg(workspace_root().join("crates/ferry-python/Cargo.toml"))
        .arg("--out")
        .arg(&wheels)
        .arg("--interpreter")
        .arg(provisioned)
        .env("PATH", path))?;
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("maturin wrote no wheel")?;
    let name = wheel.file_name().unwrap_or_default().to_string_lossy();
    if !name.contains("-abi3-") {
        bail!("python: {name} is not an abi3 wheel");
    }
    audit_wheel(&tools, &wheel)?;
    println!(
        "python: built {name} ({} KiB) in {:.0?}",
        std::fs::metadata(&wheel)?.len() / 1024,
        start.elapsed()
    );
    let venv = root_target().join("python/venv");
    run(Command::new(provisioned)
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    let python = venv.join("bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()?;
    let venv_site = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    std::fs::write(
        venv_site.join("ferry-test-packages.pth"),
        format!("{}\n", site.display()),
    )?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
        ])
        .arg(&wheel))?;
    let _ = WHEEL_VENV.set(python.clone());
    Ok(python)
}

/// The wheel's tag must be [`WHEEL_PLATFORM`] (or its legacy alias), and auditwheel, which
/// reads the versioned glibc symbols and the libraries the extension needs, must find it
/// consistent with that policy.
fn audit_wheel(tools: &Path, wheel: &Path) -> Result<()> {
    let name = wheel.file_name().unwrap_or_default().to_string_lossy();
    if !name.contains(WHEEL_PLATFORM) && !name.contains("manylinux2014_x86_64") {
        bail!("python: {name} is not tagged {WHEEL_PLATFORM}");
    }
    let out = Command::new(tools.join("auditwheel"))
        .arg("show")
        .arg(wheel)
        .output()
        .context("could not run auditwheel")?;
    let report = String::from_utf8_lossy(&out.stdout);
    // auditwheel names the most compatible policy the wheel's symbols allow.
    let consistent = report
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .contains(&format!(
            "consistent with the following platform tag: \"{WHEEL_PLATFORM}\""
        ));
    if !out.status.success() || !consistent {
        bail!(
            "python: auditwheel does not find {name} consistent with {WHEEL_PLATFORM}:\n{report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("python: auditwheel: {name} is consistent with {WHEEL_PLATFORM}");
    Ok(())
}

/// Runs tests/python with pytest against the installed wheel (see [`wheel_venv`]), adding its
/// results to `totals`, then checks the type stubs: `mypy --strict` over
/// tests/python/typed_example.py, which then runs.
fn python_tests(extra: &[&str], totals: &mut Totals) -> Result<()> {
    let python = wheel_venv()?;
    pytest(
        &python,
        &workspace_root().join("tests/python"),
        extra,
        totals,
    )?;
    let example = workspace_root().join("tests/python/typed_example.py");
    mypy_strict(&python, &example)?;
    run(Command::new(&python).arg(&example))?;
    Ok(())
}

/// Runs pytest over `dir` with `python`, adding its results to `totals`.
fn pytest(python: &Path, dir: &Path, extra: &[&str], totals: &mut Totals) -> Result<()> {
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
    ])
    .arg(dir)
    .args(extra)
    .stdout(Stdio::piped());
    eprintln!("$ {}", show(&cmd));
    let mut child = cmd.spawn().context("could not start pytest")?;
    let stdout = child.stdout.take().expect("piped");
    let mut summary = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if line.contains(" passed") || line.contains(" failed") || line.contains(" error") {
            summary = line;
        }
    }
    let status = child.wait()?;
    let count = |key: &str| -> u64 {
        summary
            .split(',')
            .find_map(|part| {
                let words: Vec<&str> = part.split_whitespace().collect();
                let at = words.iter().position(|w| w.starts_with(key))?;
                words.get(at.checked_sub(1)?)?.parse().ok()
            })
            .unwrap_or(0)
    };
    totals.passed += count("passed");
    totals.failed += count("failed") + count("error");
    totals.ignored += count("skipped");
    println!(
        "python: {} passed, {} failed, {} skipped (the installed wheel in {})",
        count("passed"),
        count("failed") + count("error"),
        count("skipped"),
        python.display()
    );
    if !status.success() {
        bail!("python tests in {} failed with {status}", dir.display());
    }
    Ok(())
}

/// `mypy --strict` over `file`, with the packages `python` has installed (their stubs).
fn mypy_strict(python: &Path, file: &Path) -> Result<()> {
    run(Command::new(provision::python_tools()?.join("python"))
        .args([
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
        ])
        .arg(python)
        .arg(file))
}

/// The example Rust extension (examples/pyo3-extension): builds its abi3 wheel with maturin
/// (dev profile: this checks behaviour; `cargo xtask bench` builds it for speed), installs it
/// beside ferry's wheel in the test venv, runs its pytest suite against real NumPy, PyTorch and
/// pyarrow, and checks a caller against its stubs with `mypy --strict`.
fn example_extension_tests(extra: &[&str], totals: &mut Totals) -> Result<()> {
    let python = wheel_venv()?;
    let dir = workspace_root().join("examples/pyo3-extension");
    install_wheel(&python, &example_wheel(&[], false)?)?;
    pytest(&python, &dir.join("tests"), extra, totals)?;
    mypy_strict(&python, &dir.join("tests/typed_caller.py"))
}

/// Installs `wheel` into `python`'s venv, replacing the installed version.
fn install_wheel(python: &Path, wheel: &Path) -> Result<()> {
    run(Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            "--disable-pip-version-check",
        ])
        .arg(wheel))
}

/// Builds the example extension's wheel (with `features`, in release when `release`) into
/// `target/python/example-wheels`; returns its path.
fn example_wheel(features: &[&str], release: bool) -> Result<PathBuf> {
    let tools = provision::python_tools()?;
    let (provisioned, _) = PYTHON.get().context("python not provisioned")?;
    let wheels = root_target().join("python/example-wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    let start = Instant::now();
    let mut cmd = Command::new(tools.join("maturin"));
    cmd.args(["build", "--manifest-path"])
        .arg(workspace_root().join("examples/pyo3-extension/Cargo.toml"))
        .arg("--out")
        .arg(&wheels)
        .arg("--interpreter")
        .arg(provisioned);
    if release {
        cmd.arg("--release");
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    run(&mut cmd)?;
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("maturin wrote no wheel for the example extension")?;
    println!(
        "python: built {} in {:.0?}",
        wheel.file_name().unwrap_or_default().to_string_lossy(),
        start.elapsed()
    );
    Ok(wheel)
}

/// `ferry::backend_tests!` makes exactly the tests of the frameworks ferry's build enables:
/// crates/ferry/tests/backend_tests.rs listed with candle alone, then with candle and Burn.
fn backend_tests_follow_features() -> Result<()> {
    for (features, expected) in [
        ("testing,candle", &["keeps_values::candle"][..]),
        (
            "testing,candle,burn",
            &["keeps_values::burn", "keeps_values::candle"][..],
        ),
    ] {
        let mut cmd = cargo();
        cmd.args([
            "test",
            "--package",
            "ferry-tensor",
            "--no-default-features",
            "--features",
        ])
        .arg(features)
        .args([
            "--test",
            "backend_tests",
            "--",
            "--list",
            "--format",
            "terse",
        ]);
        eprintln!("$ {}", show(&cmd));
        let out = cmd.output().context("could not run cargo test --list")?;
        if !out.status.success() {
            bail!(
                "listing backend_tests with {features} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.strip_suffix(": test"))
            .map(String::from)
            .collect();
        listed.sort();
        if listed != expected {
            bail!("backend_tests! with features {features} made {listed:?}, not {expected:?}");
        }
        println!("backend_tests!: features {features} make {listed:?}");
    }
    Ok(())
}

/// What a user does, on its own: `pip install ./crates/ferry-python` into a new venv (pip
/// fetches maturin and NumPy from PyPI; `--no-cache-dir`, so no wheel built from an older
/// checkout is reused), then the README's first Python line; then the README's two lines for
/// the example extension (`pip install ./examples/pyo3-extension`, a caller of it).
fn pip_install_check() -> Result<()> {
    let venv = root_target().join("python/pip-venv");
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&system_python)
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    let python = venv.join("bin/python");
    // `pip install ./FOLDER` as a user types it (no cache: nothing built from an older
    // checkout is reused), timed.
    let pip_install = |folder: &str, env: &[(&str, &str)]| -> Result<()> {
        let start = Instant::now();
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--no-cache-dir"])
            .args(["--disable-pip-version-check", "--progress-bar", "off"])
            .arg(workspace_root().join(folder))
            .envs(env.iter().copied()))?;
        println!("pip: installed ./{folder} in {:.0?}", start.elapsed());
        Ok(())
    };
    pip_install("crates/ferry-python", &[])?;
    let out = Command::new(&python)
        .args([
            "-c",
            "import ferry, numpy as np; print(np.from_dlpack(ferry.from_dlpack(np.arange(3))))",
        ])
        .output()?;
    let printed = String::from_utf8_lossy(&out.stdout);
    print!("{printed}");
    if !out.status.success() || printed.trim() != "[0 1 2]" {
        bail!(
            "pip: the installed module printed {printed:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The README's second line: the example extension beside it, then a caller of it. Built
    // in the dev profile, which `example_extension_tests` already built: a release build of
    // candle and Burn for it would add about 8 minutes on 2 cores, and behaves the same.
    pip_install(
        "examples/pyo3-extension",
        &[("MATURIN_PEP517_ARGS", "--profile dev")],
    )?;
    run(Command::new(&python)
        .arg(workspace_root().join("examples/pyo3-extension/tests/typed_caller.py")))
}

/// The workspace members that are not published (tests, benchmarks, automation, an example).
const UNPUBLISHED: [&str; 4] = [
    "ferry-tests",
    "ferry-benches",
    "xtask",
    "ferry-pyo3-example",
];

/// `cargo package` of every library crate, in dependency order (cargo stands the workspace's
/// unpublished crates in for crates.io), each then built from its own `.crate` alone: no
/// path-only dependency, no file outside the package, metadata crates.io requires. Checks
/// too that the unpublished members say `publish = false`.
fn package_check(allow_dirty: bool) -> Result<()> {
    let root = workspace_root();
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("Cargo.toml")))
        .collect();
    manifests.extend(
        ["tests", "benches", "xtask", "examples/pyo3-extension"]
            .map(|d| root.join(d).join("Cargo.toml")),
    );
    let mut published = Vec::new();
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("could not read {}", manifest.display()))?;
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"'))
            .with_context(|| format!("{} names no package", manifest.display()))?;
        let unpublished = text.lines().any(|l| l.trim() == "publish = false");
        if unpublished != UNPUBLISHED.contains(&name) {
            bail!(
                "package {name}: publish = false is {unpublished}; only {UNPUBLISHED:?} stay unpublished"
            );
        }
        if !unpublished {
            published.push(name.to_owned());
        }
    }
    remove_stale_package_sources(&published)?;
    // The minimum supported Rust (`rust-version`) is checked where it is the toolchain at hand:
    // this machine has one toolchain and fetches no other.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .context("the workspace sets no rust-version")?;
    let rustc = Command::new("rustc").arg("--version").output()?;
    let rustc = String::from_utf8_lossy(&rustc.stdout).into_owned();
    let toolchain = rustc.split_whitespace().nth(1).unwrap_or_default();
    if toolchain == msrv || toolchain.starts_with(&format!("{msrv}.")) {
        println!(
            "package: rust-version {msrv} is this toolchain ({toolchain}): the builds below check it"
        );
    } else {
        println!(
            "package: rust-version {msrv} is not this toolchain ({toolchain}); it is not checked here"
        );
    }
    let mut cmd = cargo();
    cmd.args(["package", "--workspace"]);
    for name in UNPUBLISHED {
        cmd.args(["--exclude", name]);
    }
    if allow_dirty {
        cmd.arg("--allow-dirty");
    }
    run(&mut cmd)
}

/// Removes what earlier `cargo package --workspace` runs unpacked of this workspace's own
/// crates. cargo verifies each crate against a temporary local registry under
/// `target/package/tmp-registry`, whose unpacked sources go to
/// `$CARGO_HOME/registry/src/-<hash of that path>/<crate>-<version>`; an existing directory
/// there is reused, not re-extracted. A checkout at the same path with the same (unbumped)
/// versions, as CI's is, would otherwise verify each crate against the previous run's
/// sources of its workspace dependencies (a commit that added `HostArray::concat_rows` failed
/// to find it in the last run's ferry-tensor-core). Only directories of local registries
/// (named `-<hash>`; crates.io's is `index.crates.io-<hash>`) and only this workspace's
/// package names are touched.
fn remove_stale_package_sources(published: &[String]) -> Result<()> {
    let registry = cargo_home().join("registry/src");
    let Ok(indexes) = std::fs::read_dir(&registry) else {
        return Ok(());
    };
    for index in indexes {
        let index = index?;
        if !index.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for unpacked in std::fs::read_dir(index.path())? {
            let unpacked = unpacked?;
            let dir_name = unpacked.file_name();
            let dir_name = dir_name.to_string_lossy();
            let ours = published.iter().any(|name| {
                dir_name
                    .strip_prefix(name.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
            });
            if ours {
                std::fs::remove_dir_all(unpacked.path())
                    .with_context(|| format!("removing {}", unpacked.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Cargo's home: `$CARGO_HOME`, else `~/.cargo`.
pub(crate) fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
        PathBuf::from,
    )
}

/// Packages and feature sets whose docs `ci` builds besides the workspace's (every feature
/// on): each crate with its optional modules off, and ferry-io with one format alone, so no
/// intra-doc link or import depends on a feature being on. (Each set rechecks its
/// dependencies, so the list stays short: the facade's framework features only re-export.)
const DOC_FEATURE_SETS: [(&str, &str); 5] = [
    ("ferry-tensor", ""),
    ("ferry-io", "npy"),
    ("ferry-io", "safetensors"),
    ("ferry-python", ""),
    ("ferry-arrow", ""),
];

fn ci() -> Result<()> {
    let start = Instant::now();
    run(cargo().args(["fmt", "--all", "--check"]))?;
    layers::check(&workspace_root())?;
    build_env()?;
    let step = |name: &str, since: Instant| println!("ci: {name} done at {:.0?}", since.elapsed());
    // Every framework on (the default feature set of tests/ and benches/), and the core alone.
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "clippy",
        "--package",
        "ferry-tensor",
        "--no-default-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("clippy", start);
    cuda_checks()?;
    gpu_bundle::run_sh_without_a_gpu()?;
    step("cuda compile checks", start);
    let mut totals = Totals::default();
    let report = root_target().join("suite-report.txt");
    let _ = std::fs::remove_file(&report);
    let report_env = report.to_string_lossy().into_owned();
    run_tests(
        &["--workspace"],
        &[("FERRY_SUITE_REPORT", &report_env)],
        &mut totals,
    )?;
    step("tests", start);
    backend_tests_follow_features()?;
    step("backend_tests! under two feature sets", start);
    python_tests(&[], &mut totals)?;
    step("python tests", start);
    example_extension_tests(&[], &mut totals)?;
    step("example extension (examples/pyo3-extension)", start);
    pip_install_check()?;
    step("pip install ./crates/ferry-python", start);
    // The main job as a user runs it: the same build, run and engine step.
    demo(true)?;
    step("demo (cargo xtask demo)", start);
    let cases = std::fs::read_to_string(&report).unwrap_or_default();
    let mut lines: Vec<&str> = cases.lines().collect();
    lines.sort_unstable();
    println!("ci: backend matrix (cases per backend and pair):");
    for line in &lines {
        println!("  {line}");
    }
    fuzz(100_000)?;
    step("fuzz", start);
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    // Docs (intra-doc links included) hold for every feature on its own too.
    for (package, features) in DOC_FEATURE_SETS {
        run(cargo()
            .args([
                "doc",
                "--no-deps",
                "--no-default-features",
                "--package",
                package,
            ])
            .args(["--features", features])
            .env("RUSTDOCFLAGS", "-D warnings"))?;
    }
    step("docs", start);
    package_check(false)?;
    step(
        "cargo package (every library crate, built from its .crate)",
        start,
    );
    // The benchmarks keep compiling and running: small sizes, short runs, no assertions, built
    // in the dev profile (a smoke run; measurements are `cargo xtask bench`'s job).
    bench(bench::Run::Smoke, false)?;
    step("bench (smoke run)", start);
    println!("ci: finished in {:.0?}", start.elapsed());
    println!(
        "ci: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if totals.failed > 0 || totals.passed == 0 {
        bail!("ci: tests failed or none ran");
    }
    Ok(())
}

/// Compile checks of the CUDA paths with nvcc from PyPI (no GPU needed to compile). They use
/// their own target folder in the cache, so candle's CUDA kernels are built once per machine.
fn cuda_checks() -> Result<()> {
    let home = provision::nvcc()?;
    let path = format!(
        "{}:{}",
        home.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = provision::cache_dir().join("cuda-target");
    let cuda = |cmd: &mut Command| {
        cmd.env("PATH", &path)
            .env("CUDA_HOME", &home)
            .env("CUDA_PATH", &home)
            .env("CUDA_COMPUTE_CAP", "80")
            .env("CARGO_TARGET_DIR", &target);
    };
    // The adapters, and the CUDA tests and benchmarks that `cargo xtask gpu-bundle` builds.
    // Burn's CUDA backend pulls cubecl-llvm, whose build downloads an LLVM bundle from outside
    // the package registries; DOCS_RS=1 makes it skip that (a check needs no LLVM).
    let checks: [(&str, &str, bool); 5] = [
        ("ferry-candle", "cuda", false),
        ("ferry-tch", "cuda", false),
        ("ferry-burn", "cuda", true),
        ("ferry-tests", "candle,cuda", false),
        ("ferry-tests", "burn,burn-cuda-nvrtc", true),
    ];
    for (package, features, skip_llvm) in checks {
        let mut cmd = cargo();
        cmd.args([
            "clippy",
            "--package",
            package,
            "--all-targets",
            "--no-default-features",
        ])
        .args(["--features", features, "--", "-D", "warnings"]);
        if skip_llvm {
            cmd.env("DOCS_RS", "1");
        }
        cuda(&mut cmd);
        run(&mut cmd)?;
    }
    // Candle's and Burn's `cuda` together must stop early, with ferry's explanation (its build
    // script) or, when cargo runs cudarc's build script first, cudarc's one-line refusal of the
    // two linking modes; never by compiling into a wall of cubecl/cudarc errors.
    let mut cmd = cargo();
    cmd.args([
        "check",
        "--package",
        "ferry-tensor",
        "--features",
        "candle,burn,cuda",
    ])
    .env("DOCS_RS", "1");
    cuda(&mut cmd);
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours = stderr.contains("ferry: features `candle` + `burn` + `cuda`");
    let cudarc =
        stderr.contains("Both `dynamic-loading` and `dynamic-linking` features are active");
    if out.status.success() || !(ours || cudarc) || stderr.contains("error[E") {
        bail!("ferry with candle+burn+cuda must stop before compiling, got:\n{stderr}");
    }
    println!(
        "ci: candle+burn+cuda stops early ({})",
        if ours {
            "ferry's explanation"
        } else {
            "cudarc's linking-mode refusal"
        }
    );
    Ok(())
}

/// Every backend the demo runs, and the plots and Parquet dataset it writes.
const DEMO_FEATURES: &str = "candle,burn,tch,plot,arrow,testing";

/// `cargo xtask demo [--no-engines]`, the main job, as CI runs it too: provisions libtorch
/// (for tch), builds the demo in the `demo` profile (workspace Cargo.toml), runs it, then the
/// engine step: a venv of the pinned engines ([`provision::engines`]) runs
/// crates/ferry/examples/arrow_engines.py over the dataset the demo wrote, which checks
/// pyarrow.dataset, DuckDB, Polars, DataFusion and Ray Data against ferry's answers. Prints
/// how long each part took.
fn demo(engines: bool) -> Result<()> {
    let start = Instant::now();
    let mut split: Vec<(&str, f64)> = Vec::new();
    let mut lap = {
        let mut last = Instant::now();
        move |what: &'static str, split: &mut Vec<(&str, f64)>| {
            split.push((what, last.elapsed().as_secs_f64()));
            last = Instant::now();
        }
    };
    let _ = LIBTORCH.set(provision::libtorch()?);
    lap("libtorch", &mut split);
    let demo_cargo = |verb: &str| {
        let mut cmd = cargo();
        cmd.args([verb, "--profile", "demo", "--package", "ferry-tensor"])
            .args(["--features", DEMO_FEATURES, "--example", "demo"]);
        cmd
    };
    run(&mut demo_cargo("build"))?;
    lap("build", &mut split);
    let out = root_target().join("ferry-demo");
    run(demo_cargo("run").env("FERRY_DEMO_OUT", &out))?;
    lap("run", &mut split);
    let (dataset, expected) = (out.join("dataset"), out.join("expected.json"));
    let script = workspace_root().join("crates/ferry/examples/arrow_engines.py");
    if engines {
        println!(
            "\nengine step: pyarrow, DuckDB, Polars, DataFusion and Ray Data over {}",
            dataset.display()
        );
        let python = provision::engines()?;
        lap("engines venv", &mut split);
        let mut step = Command::new(&python);
        step.arg(&script).arg(&dataset).arg(&expected);
        run(&mut step)?;
        lap("engine step", &mut split);
        println!("run the engine step again with:\n  {}", show(&step));
    } else {
        println!(
            "\nengine step skipped (--no-engines): pyarrow, DuckDB, Polars, DataFusion and Ray \
             Data did not read {}; `cargo xtask demo` runs them",
            dataset.display()
        );
    }
    let parts: Vec<String> = split
        .iter()
        .map(|(what, secs)| format!("{what} {secs:.0} s"))
        .collect();
    println!(
        "demo: finished in {:.0} s ({})",
        start.elapsed().as_secs_f64(),
        parts.join(", ")
    );
    Ok(())
}

fn bench(mode: bench::Run, report_only: bool) -> Result<()> {
    build_env()?;
    let quick = mode.quick();
    let criterion_dir = root_target().join("criterion");
    if report_only && !criterion_dir.exists() {
        bail!(
            "bench --report: no criterion results in {}; run `cargo xtask bench` first",
            criterion_dir.display()
        );
    }
    if !report_only {
        let _ = std::fs::remove_dir_all(&criterion_dir);
        // `parquet_alloc`: the Parquet write again, with a global allocator that keeps freed
        // memory (mimalloc), as pyarrow's jemalloc pool does.
        for bench in ["host", "parquet_alloc"] {
            let mut cmd = cargo();
            cmd.args(["bench", "--package", "ferry-benches", "--bench", bench])
                .args(["--profile", mode.profile()]);
            if quick {
                cmd.env("FERRY_BENCH_QUICK", "1");
            }
            run(&mut cmd)?;
        }
    }
    let mut numpy = numpy_baseline(quick).unwrap_or_else(|e| {
        eprintln!("bench: numpy baseline skipped: {e:#}");
        Vec::new()
    });
    numpy.extend(pyarrow_baseline(quick)?);
    numpy.extend(compare_baselines(quick)?);
    let mut python = python_handoff(quick)?;
    python.0.extend(python_extension(mode)?);
    let table = bench::report(&criterion_dir, &numpy, &python, mode)?;
    println!("{table}");
    if mode == bench::Run::Full {
        let path = workspace_root().join("benches/RESULTS.md");
        std::fs::write(&path, &table)?;
        println!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// Runs benches/python_handoff.py against the installed wheel (41 rounds of 500 calls with
/// `--quick`, else 2,000).
fn python_handoff(quick: bool) -> Result<(Vec<bench::PyRow>, String)> {
    let calls = if quick { "500" } else { "2000" };
    let out = bench_script(&wheel_venv()?, "python_handoff.py", calls)?;
    Ok(bench::parse_python(&out))
}

/// Runs benches/python_extension.py: builds the example extension with its `bench` feature
/// (rust-numpy's argument type beside ferry's; release, or the dev profile for the smoke run),
/// installs it into the test venv and times argument extraction.
fn python_extension(mode: bench::Run) -> Result<Vec<bench::PyRow>> {
    let python = wheel_venv()?;
    let wheel = example_wheel(&["bench", "pyo3/abi3-py310"], mode != bench::Run::Smoke)?;
    install_wheel(&python, &wheel)?;
    let calls = if mode.quick() { "500" } else { "2000" };
    let out = bench_script(&python, "python_extension.py", calls)?;
    Ok(bench::parse_python(&out).0)
}

/// Runs benches/pyarrow_parquet.py in the provisioned Python (1 MiB with `--quick`, else 1, 64
/// and 256 MiB, the sizes of the Arrow group).
fn pyarrow_baseline(quick: bool) -> Result<Vec<(String, f64)>> {
    let (python, _) = provision::python_env()?;
    let out = bench_script(
        &python,
        "pyarrow_parquet.py",
        if quick { "1" } else { "1 64 256" },
    )?;
    Ok(bench::parse_baselines(&out))
}

/// Runs benches/compare_baselines.py (NumPy's `assert_allclose`, torch's `assert_close`) in the
/// provisioned Python, at the compare group's size.
fn compare_baselines(quick: bool) -> Result<Vec<(String, f64)>> {
    let (python, _) = provision::python_env()?;
    let side = if quick { "512" } else { "4096" };
    let out = bench_script(&python, "compare_baselines.py", side)?;
    Ok(bench::parse_baselines(&out))
}

/// Runs benches/numpy_transpose.py in the provisioned Python.
fn numpy_baseline(quick: bool) -> Result<Vec<(String, f64)>> {
    let (python, _) = provision::python_env()?;
    let side = if quick { "512" } else { "4096" };
    let out = bench_script(&python, "numpy_transpose.py", side)?;
    Ok(bench::parse_baselines(&out))
}

/// What `python benches/<script> <arg>` printed, or its error output.
fn bench_script(python: &Path, script: &str, args: &str) -> Result<String> {
    let out = Command::new(python)
        .arg(workspace_root().join("benches").join(script))
        .args(args.split_whitespace())
        .output()?;
    if !out.status.success() {
        bail!(
            "benches/{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Builds the `it` test binary with `features` and returns its path.
fn test_binary(features: &str) -> Result<PathBuf> {
    let out = cargo()
        .args([
            "test",
            "--package",
            "ferry-tests",
            "--no-default-features",
            "--features",
            features,
            "--test",
            "it",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building the test binary failed");
    }
    let stdout = String::from_utf8(out.stdout)?;
    let exe = stdout
        .lines()
        .filter(|l| l.contains("\"name\":\"it\"") && l.contains("\"executable\":\""))
        .find_map(|l| {
            l.split("\"executable\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        })
        .context("no test executable in cargo's output")?;
    Ok(PathBuf::from(exe))
}

/// Runs the whole Rust suite that needs no libtorch (core, DLPack, files, plots, stress,
/// properties, soundness regressions, candle and burn) under valgrind memcheck, then the tch
/// tests (the `tch` module, the tch backend suite, the tch soundness regressions) in a binary
/// built with libtorch. No suppressions: libtorch's
/// process-lifetime pools show up only as "possibly lost" or "still reachable", which do not
/// count; only errors and definite leaks fail the run. The embedded-interpreter Rust tests are
/// left out (they import PyTorch); the installed wheel's exchange-API tests run last
/// ([`python_memcheck`]).
fn valgrind() -> Result<()> {
    let memcheck = |exe: &Path, filters: &[&str]| -> Result<()> {
        let start = Instant::now();
        run(Command::new("valgrind")
            .args([
                "--tool=memcheck",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--error-exitcode=99",
                "--quiet",
            ])
            .arg(exe)
            .args(filters)
            .args(["--test-threads=2"])
            .env("FERRY_FUZZ_CASES", "64"))?;
        println!(
            "valgrind: {} {}: 0 errors, 0 bytes definitely lost ({:.0?})",
            exe.display(),
            filters.join(" "),
            start.elapsed()
        );
        Ok(())
    };
    let plain = test_binary("candle,burn,files,plot,arrow")?;
    memcheck(&plain, &[])?;
    build_env()?;
    let with_tch = test_binary("tch")?;
    memcheck(&with_tch, &["tch::", "_tch_"])?;
    python_memcheck()
}

/// The installed wheel under memcheck, in three runs: tests/python/test_exchange.py (the C
/// exchange API table, capsules, and tvm-ffi taking and returning ferry arrays) without
/// conftest.py, so PyTorch is not loaded; then test_torch_import.py (PyTorch imports and their
/// snapshots, the GIL checks), test_arrow.py and test_arrow_streams.py (the Arrow PyCapsule
/// interface: arrays, record batches, streams both ways) with it; then
/// the example extension's tests (its argument types). CPython, PyTorch and the dynamic loader
/// report errors of their own under valgrind (uninitialised bytes in `int.from_bytes`,
/// `strncmp` over-reads), so only an error whose stack passes through a ferry module
/// (`ferry.abi3.so`, `ferry_example.abi3.so`) fails the run.
fn python_memcheck() -> Result<()> {
    let python = wheel_venv()?;
    let tests = workspace_root().join("tests/python");
    python_memcheck_run(
        &python,
        &[tests.join("test_exchange.py")],
        true,
        &["ferry.abi3.so"],
    )?;
    python_memcheck_run(
        &python,
        &[
            tests.join("test_torch_import.py"),
            tests.join("test_arrow.py"),
            tests.join("test_arrow_streams.py"),
        ],
        false,
        &["ferry.abi3.so"],
    )?;
    // The example extension's suite: ferry's argument types (NumPy's struct read, DLPack and
    // Arrow imports, arrays handed to the ferry wheel), errors in either module.
    install_wheel(&python, &example_wheel(&[], false)?)?;
    python_memcheck_run(
        &python,
        &[workspace_root().join("examples/pyo3-extension/tests/test_example.py")],
        false,
        &["ferry.abi3.so", "ferry_example.abi3.so"],
    )
}

/// pytest over `files` under memcheck (see [`python_memcheck`]); an error whose stack passes
/// through one of `modules` (file names of loaded objects) fails the run.
fn python_memcheck_run(
    python: &Path,
    files: &[PathBuf],
    no_conftest: bool,
    modules: &[&str],
) -> Result<()> {
    let ours_in = |block: &str| modules.iter().any(|m| block.contains(m));
    let start = Instant::now();
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=memcheck", "--num-callers=40"])
        .arg(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    if no_conftest {
        cmd.arg("--noconftest");
    }
    let out = cmd.args(files).env("PYTHONMALLOC", "malloc").output()?;
    let names = files
        .iter()
        .map(|f| f.file_name().unwrap_or_default().to_string_lossy())
        .collect::<Vec<_>>()
        .join(", ");
    let log = String::from_utf8_lossy(&out.stderr);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!("valgrind: the Python tests {names} failed:\n{log}");
    }
    // One block per error: the lines from a message up to the next blank `==pid==` line.
    let mut ours = Vec::new();
    let mut block = String::new();
    for line in log.lines() {
        let body = line.split_once("== ").map_or("", |(_, b)| b);
        if body.trim().is_empty() {
            if ours_in(&block) {
                ours.push(std::mem::take(&mut block));
            }
            block.clear();
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    if ours_in(&block) {
        ours.push(block);
    }
    if !ours.is_empty() {
        bail!(
            "valgrind: {} error(s) in the ferry module ({names}):\n{}",
            ours.len(),
            ours.join("\n")
        );
    }
    println!(
        "valgrind: {names}: no error in the ferry module ({:.0?})",
        start.elapsed()
    );
    Ok(())
}

fn fuzz(cases: u32) -> Result<()> {
    if LIBTORCH.get().is_none() {
        build_env()?;
    }
    let mut totals = Totals::default();
    run_tests(
        // Same selection as `ci`'s test run, so the debug build is reused as it is.
        &["--workspace", "--", "properties::hostile"],
        &[("FERRY_FUZZ_CASES", &cases.to_string())],
        &mut totals,
    )?;
    println!(
        "fuzz: {cases} cases per property, {} passed, {} failed",
        totals.passed, totals.failed
    );
    Ok(())
}
