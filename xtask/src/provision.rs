//! Provisioning of what the builds need and a fresh machine lacks: libtorch 2.9.0 from PyPI
//! (for tch), nvcc from PyPI (for the CUDA compile checks), the Python test packages, and the
//! Python tools (maturin, mypy), each in a cached folder that is reused when present and of the
//! right version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// PyTorch version tch 0.22.0 (and burn 0.22.1's LibTorch backend) is built for.
pub const TORCH_VERSION: &str = "2.9.0";
/// The CUDA runtime wheels torch 2.9.0's CPU library links against (versions torch pins).
const TORCH_RUNTIME_WHEELS: [&str; 2] = [
    "nvidia-cuda-runtime-cu12==12.8.90",
    "nvidia-cuda-cupti-cu12==12.8.90",
];
/// nvcc and headers for the CUDA compile checks: the CUDA 13.0 pieces of
/// `cuda-toolkit[nvcc,cccl,cudart]==13.0.2`, pinned one by one (cudarc 0.19 knows CUDA 13.0).
const NVCC_WHEELS: [&str; 5] = [
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-cuda-runtime==13.0.96",
];

/// Where downloads are kept between runs: `$FERRY_CACHE`, else `$XDG_CACHE_HOME/ferry`, else
/// `~/.cache/ferry`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("ferry")
}

/// A Python virtual environment in `dir` with `packages` installed `--no-deps`, made once and
/// marked ready; returns its site-packages folder.
fn venv(dir: &Path, what: &str, packages: &[&str]) -> Result<PathBuf> {
    let marker = dir.join("ready");
    let wanted = packages.join(" ");
    if let Ok(text) = std::fs::read_to_string(&marker)
        && let Some((spec, site)) = text.split_once('\n')
        && spec == wanted
        && Path::new(site.trim()).exists()
    {
        eprintln!("{what}: reusing {}", dir.display());
        return Ok(PathBuf::from(site.trim()));
    }
    eprintln!(
        "{what}: provisioning from PyPI into {} (once; later runs reuse it)",
        dir.display()
    );
    let start = Instant::now();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    crate::run(
        Command::new(&python)
            .args(["-m", "venv"])
            .arg(dir.join("venv")),
    )?;
    let pip = dir.join("venv/bin/pip");
    let done = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let done = done.clone();
        let what = what.to_string();
        std::thread::spawn(move || {
            let mut waited = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                waited += 1;
                if waited % 30 == 0 {
                    eprintln!("{what}: still installing ({waited} s)...");
                }
            }
        })
    };
    let result = pip_install(&pip, packages);
    done.store(true, Ordering::Relaxed);
    let _ = heartbeat.join();
    result?;
    let out = Command::new(dir.join("venv/bin/python"))
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .context("could not ask the venv for its site-packages")?;
    let site = String::from_utf8(out.stdout)?.trim().to_string();
    std::fs::write(&marker, format!("{wanted}\n{site}\n"))?;
    eprintln!("{what}: ready in {:.0?}", start.elapsed());
    Ok(PathBuf::from(site))
}

/// Installs exactly `packages` (pinned, `--no-deps`) with `pip`, preferring wheels in the
/// cache's `wheels/` folder when it exists.
fn pip_install(pip: &Path, packages: &[&str]) -> Result<()> {
    let mut cmd = Command::new(pip);
    cmd.args([
        "install",
        "--no-deps",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
    ]);
    let local = cache_dir().join("wheels");
    if local.is_dir() {
        cmd.arg("--find-links").arg(&local);
    }
    crate::run(cmd.args(packages))
}

/// The libtorch folder (with `include/` and `lib/`) tch builds against: `$LIBTORCH` when the
/// user set it, else torch 2.9.0 from PyPI in the cache.
pub fn libtorch() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        eprintln!("libtorch: using LIBTORCH={}", PathBuf::from(&dir).display());
        return Ok(PathBuf::from(dir));
    }
    let torch = format!("torch=={TORCH_VERSION}");
    let mut packages = vec![torch.as_str()];
    packages.extend(TORCH_RUNTIME_WHEELS);
    let site = venv(
        &cache_dir().join(format!("libtorch-{TORCH_VERSION}")),
        "libtorch",
        &packages,
    )?;
    let root = site.join("torch");
    if !root.join("lib/libtorch_cpu.so").exists() {
        bail!(
            "libtorch: {} has no lib/libtorch_cpu.so; delete it and run again",
            root.display()
        );
    }
    Ok(root)
}

/// nvcc from PyPI: returns the CUDA home (bin/nvcc, include/, lib/).
pub fn nvcc() -> Result<PathBuf> {
    if let Some(home) =
        std::env::var_os("CUDA_HOME").filter(|h| Path::new(h).join("bin/nvcc").exists())
    {
        return Ok(PathBuf::from(home));
    }
    let site = venv(&cache_dir().join("nvcc-13.0"), "nvcc", &NVCC_WHEELS)?;
    let home = site.join("nvidia/cu13");
    if !home.join("bin/nvcc").exists() {
        bail!("nvcc: {} has no bin/nvcc", home.display());
    }
    Ok(home)
}

/// What the Python-side tests and benchmark baselines import, pinned, on top of torch 2.9.0:
/// NumPy, safetensors, pytest, tvm-ffi, the rest of torch's own dependencies (its CUDA
/// libraries, which `import torch` loads even on a machine without a GPU; triton is not
/// needed), and the engines ([`ENGINE_PACKAGES`]).
const TEST_PACKAGES: [&str; 30] = [
    // A real consumer of DLPack 1.3's C exchange API (tests/python/test_exchange.py).
    "apache-tvm-ffi==0.1.15.post2",
    "safetensors==0.6.2",
    "pytest==8.4.2",
    "iniconfig==2.3.1",
    "packaging==26.4",
    "pluggy==1.7.0",
    "Pygments==2.21.0",
    "typing_extensions==4.16.0",
    "filelock==4.3.1",
    "fsspec==2026.9.0",
    "Jinja2==3.1.6",
    "MarkupSafe==3.0.4",
    "mpmath==1.3.0",
    "networkx==3.6.1",
    "sympy==1.14.0",
    "nvidia-cublas-cu12==12.8.4.1",
    "nvidia-cuda-nvrtc-cu12==12.8.93",
    "nvidia-cudnn-cu12==9.10.2.21",
    "nvidia-cufft-cu12==11.3.3.83",
    "nvidia-cufile-cu12==1.13.1.3",
    "nvidia-curand-cu12==10.3.9.90",
    "nvidia-cusolver-cu12==11.7.3.90",
    "nvidia-cusparse-cu12==12.5.8.93",
    "nvidia-cusparselt-cu12==0.7.1",
    "nvidia-nccl-cu12==2.27.5",
    "nvidia-nvjitlink-cu12==12.8.93",
    "nvidia-nvshmem-cu12==3.3.20",
    "nvidia-nvtx-cu12==12.8.90",
    "nvidia-cuda-runtime-cu12==12.8.90",
    "nvidia-cuda-cupti-cu12==12.8.90",
];

/// The engines ferry's Arrow data goes to, pinned with their dependencies: pyarrow,
/// DataFusion, Ray Data (local mode; it imports pandas), Polars and DuckDB, over NumPy. The
/// demo's engine step runs in a venv of these alone ([`engines`]); the Python tests get them
/// beside torch ([`python_env`]).
const ENGINE_PACKAGES: [&str; 28] = [
    "numpy==2.4.6",
    "pyarrow==26.0.1",
    "datafusion==55.0.0",
    "ray==2.60.0",
    "pandas==3.1.1",
    "python-dateutil==4.0.0",
    "tzdata==2026.6",
    "cloudpickle==3.1.3",
    "click==8.5.1",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "attrs==26.1.0",
    "msgpack==1.2.4",
    "protobuf==7.36.2",
    "PyYAML==6.0.4",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "idna==3.20",
    "charset-normalizer==3.5.3",
    "certifi==2026.10.19.post1",
    "filelock==4.3.1",
    "packaging==26.4",
    "typing_extensions==4.16.0",
    "polars==2.1.0",
    "polars-runtime-32==2.1.0",
    "duckdb==2.0.1",
];

/// The engines' venv ([`ENGINE_PACKAGES`], no torch: what the demo's engine step needs on a
/// fresh machine, a few hundred MB instead of torch's CUDA libraries); returns its python.
pub fn engines() -> Result<PathBuf> {
    let dir = cache_dir().join("engines");
    venv(&dir, "engines", &ENGINE_PACKAGES)?;
    Ok(dir.join("venv/bin/python"))
}

/// Builds and checks Python packages: maturin (the wheel's build backend) with zig (the
/// linker that targets an old glibc, for the manylinux2014 wheel), auditwheel (checks the
/// wheel's platform tag against the symbols it needs) and mypy (checks the type stubs), with
/// their dependencies, pinned.
const TOOL_PACKAGES: [&str; 11] = [
    "maturin==1.16.0",
    "ziglang==0.15.2",
    "auditwheel==6.8.2",
    "pyelftools==0.33",
    "packaging==26.4",
    "mypy==2.4.1",
    "mypy_extensions==1.2.0",
    "pathspec==1.1.1",
    "librt==0.17.0",
    "ast_serialize==0.13.1",
    "typing_extensions==4.16.0",
];

/// The Python tools' venv (`bin/maturin`, and `bin/python -m mypy`); returns its `bin` folder.
pub fn python_tools() -> Result<PathBuf> {
    let dir = cache_dir().join("python-tools");
    venv(&dir, "python tools", &TOOL_PACKAGES)?;
    Ok(dir.join("venv/bin"))
}

/// A Python with torch 2.9.0, NumPy, safetensors and pytest (the libtorch venv, completed once
/// and marked ready); returns `(python, site-packages)`.
pub fn python_env() -> Result<(PathBuf, PathBuf)> {
    libtorch()?;
    let dir = cache_dir().join(format!("libtorch-{TORCH_VERSION}"));
    let python = dir.join("venv/bin/python");
    let site = PathBuf::from(
        std::fs::read_to_string(dir.join("ready"))?
            .lines()
            .nth(1)
            .context("libtorch venv marker has no site-packages line")?
            .trim(),
    );
    let marker = dir.join("python-ready");
    let mut packages: Vec<&str> = ENGINE_PACKAGES.to_vec();
    packages.extend(
        TEST_PACKAGES
            .iter()
            .filter(|p| !ENGINE_PACKAGES.contains(p)),
    );
    let wanted = packages.join(" ");
    if std::fs::read_to_string(&marker).is_ok_and(|text| text == wanted) {
        return Ok((python, site));
    }
    eprintln!(
        "python: installing numpy, safetensors, pytest and torch's dependencies into {} (once)",
        dir.display()
    );
    let start = Instant::now();
    pip_install(&dir.join("venv/bin/pip"), &packages)?;
    crate::run(Command::new(&python).args([
        "-c",
        "import numpy, torch, safetensors, pytest, tvm_ffi, pyarrow, datafusion, ray, polars, duckdb; print('python: torch', torch.__version__, 'numpy', numpy.__version__, 'pyarrow', pyarrow.__version__)",
    ]))?;
    std::fs::write(&marker, wanted)?;
    eprintln!("python: ready in {:.0?}", start.elapsed());
    Ok((python, site))
}
