//! `cargo xtask gpu-bundle`: the CUDA tests and benchmarks, built here (no GPU, no libcuda, no
//! LLVM) into `target/gpu-bundle/` with a `run.sh`, for a GPU machine that has an NVIDIA driver
//! and a PyTorch with CUDA libraries but no Rust toolchain.
//!
//! Two builds, because candle-core 0.11 and burn 0.22 ask for clashing cudarc linking modes:
//! - **candle** links `libcuda`, `libnvrtc`, `libcurand`, `libcublas` and `libcublasLt` when
//!   it is built (cudarc's `dynamic-linking`). None is here, so the linker gets stubs: shared
//!   libraries with the sonames of CUDA 13's and every function cudarc declares, made from
//!   cudarc's own bindings. They are never loaded: the real libraries are, on the GPU machine.
//! - **burn** loads CUDA at run time (cudarc's `dynamic-loading`), but CubeCL 0.11's CUDA
//!   runtime links LLVM 23 for its default kernel compiler, and that LLVM is a prebuilt download
//!   from outside the package registries. The bundle selects CubeCL's other CUDA compiler
//!   (C++ through NVRTC, feature `burn-cuda-nvrtc`), skips the LLVM build (`DOCS_RS=1`, as
//!   the CI compile check does) and links an object of stubs for the LLVM C API functions the
//!   unused LLVM compiler references; a stub that is ever called says so and aborts.
//!
//! tch is not in the bundle: tch 0.22 is built for libtorch 2.9's C++ ABI, and a tch binary
//! run against the GPU machine's PyTorch 2.11 crashes (README's CUDA section). Its stand-in is ferry's Python module (the abi3
//! wheel) importing PyTorch CUDA tensors over DLPack, checked by `cuda_check.py`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, provision, root_target, run, workspace_root};

/// The bundle's size limit: what may be carried to the GPU machine, with room to spare.
const MAX_BYTES: u64 = 60 << 20;

/// The GPU the bundle is built for (H200: compute capability 9.0). Candle's kernels are PTX, so
/// newer GPUs run them too.
const COMPUTE_CAP: &str = "90";

/// One framework's CUDA build: its name in the bundle, the features of `ferry-tests` (whose
/// `it` test and `cuda` bench binaries go into the bundle), and whether the LLVM build is
/// skipped (`DOCS_RS`).
struct Build {
    name: &'static str,
    features: &'static str,
    skip_llvm: bool,
}

const BUILDS: [Build; 2] = [
    Build {
        name: "candle",
        features: "candle,cuda",
        skip_llvm: false,
    },
    Build {
        name: "burn",
        features: "burn,burn-cuda-nvrtc",
        skip_llvm: true,
    },
];

/// cudarc's modules that candle links, the library each one names, and that library's soname
/// in CUDA 13 (what the binary will ask the loader for on the GPU machine).
const CANDLE_LINKED: [(&str, &str, &str); 5] = [
    ("driver", "cuda", "libcuda.so.1"),
    ("nvrtc", "nvrtc", "libnvrtc.so.13"),
    ("curand", "curand", "libcurand.so.10"),
    ("cublas", "cublas", "libcublas.so.13"),
    ("cublaslt", "cublasLt", "libcublasLt.so.13"),
];

pub fn gpu_bundle() -> Result<()> {
    let start = Instant::now();
    let home = provision::nvcc()?;
    let target = provision::cache_dir().join("cuda-target");
    let stubs = target.join("ferry-link-stubs");
    link_stubs(&stubs, &home)?;
    let bundle = root_target().join("gpu-bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    let bin = bundle.join("bin");
    std::fs::create_dir_all(&bin)?;
    let path = format!(
        "{}:{}",
        home.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for build in &BUILDS {
        let cuda = |cmd: &mut Command| {
            cmd.env("PATH", &path)
                .env("CUDA_HOME", &home)
                .env("CUDA_PATH", &home)
                .env("CUDA_COMPUTE_CAP", COMPUTE_CAP)
                .env("CARGO_TARGET_DIR", &target)
                // Read by the build script of tests/: only its binaries link the stubs, and no
                // dependency is rebuilt for them.
                .env("FERRY_LINK_STUBS", &stubs);
            if build.skip_llvm {
                cmd.env("DOCS_RS", "1");
            }
        };
        // The `it` test binary and the `cuda` bench, both through `cargo test --release`: the
        // bench reuses the test build.
        for (kind, target, file) in [("--test", "it", "tests"), ("--bench", "cuda", "bench")] {
            let mut cmd = cargo();
            cmd.args([
                "test",
                "--release",
                "--package",
                "ferry-tests",
                kind,
                target,
            ]);
            cuda(&mut cmd);
            let exe = executable(&mut cmd, build.features, target)?;
            pack(&exe, &bin.join(format!("{}-{file}.xz", build.name)))?;
        }
        println!(
            "gpu-bundle: {} built ({:.0?} so far)",
            build.name,
            start.elapsed()
        );
    }
    python_wheel(&bundle)?;
    let here = workspace_root().join("xtask/gpu-bundle");
    for file in ["run.sh", "cuda_check.py"] {
        std::fs::copy(here.join(file), bundle.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    let bytes = folder_bytes(&bundle)?;
    println!(
        "gpu-bundle: {} ({:.1} MiB) in {:.0?}; run it on a GPU machine with `bash {}/run.sh`",
        bundle.display(),
        bytes as f64 / (1 << 20) as f64,
        start.elapsed(),
        bundle.display()
    );
    if bytes > MAX_BYTES {
        bail!(
            "gpu-bundle: {bytes} bytes is over the {} MiB limit",
            MAX_BYTES >> 20
        );
    }
    Ok(())
}

/// CI's check of the bundle's runner on a machine without a GPU: it must stop at once, with
/// exit status 3 and a message saying why, not fail on the binaries (which CI does not build).
pub fn run_sh_without_a_gpu() -> Result<()> {
    if Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("ci: a GPU is visible: run.sh's no-GPU exit is not checked here");
        return Ok(());
    }
    let out = Command::new("bash")
        .arg(workspace_root().join("xtask/gpu-bundle/run.sh"))
        .env("OUT", root_target().join("gpu-bundle-no-gpu"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(3) || !stdout.contains("no NVIDIA GPU is visible here") {
        bail!(
            "run.sh without a GPU must exit 3 with its message, got {}:\n{stdout}",
            out.status
        );
    }
    println!(
        "ci: gpu-bundle's run.sh without a GPU: exit 3, \"{}\"",
        stdout.lines().next().unwrap_or("")
    );
    Ok(())
}

/// Builds (`--no-run`) what `cmd` names for the bundle's target with `features` and returns
/// the path of the executable whose target is `name`.
fn executable(cmd: &mut Command, features: &str, name: &str) -> Result<PathBuf> {
    cmd.args([
        "--no-run",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--no-default-features",
        "--features",
        features,
        "--message-format=json-render-diagnostics",
    ])
    .stderr(Stdio::inherit());
    eprintln!("$ {}", crate::show(cmd));
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("gpu-bundle: building `{name}` with {features} failed");
    }
    let stdout = String::from_utf8(out.stdout)?;
    let target = format!("\"name\":\"{name}\"");
    stdout
        .lines()
        .filter(|l| l.contains(&target) && l.contains("\"executable\":\""))
        .find_map(|l| {
            l.split("\"executable\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        })
        .map(PathBuf::from)
        .with_context(|| format!("gpu-bundle: no `{name}` executable in cargo's output"))
}

/// Strips `from` and compresses it into `to` (xz, with the provisioned Python's `lzma`, which
/// `run.sh` unpacks with the GPU machine's Python): Burn's test binary alone is 60 MiB
/// stripped, about 12 compressed.
fn pack(from: &Path, to: &Path) -> Result<()> {
    let stripped = to.with_extension("");
    run(Command::new("strip")
        .arg("--strip-all")
        .arg(from)
        .arg("-o")
        .arg(&stripped))?;
    let (python, _) = provision::python_env()?;
    run(Command::new(python)
        .args([
            "-c",
            "import lzma, sys; open(sys.argv[2], 'wb').write(lzma.compress(open(sys.argv[1], 'rb').read(), preset=6))",
        ])
        .arg(&stripped)
        .arg(to))?;
    Ok(std::fs::remove_file(stripped)?)
}

/// The `ferry` abi3 wheel (maturin, release) for the Python stand-in of tch's CUDA path.
fn python_wheel(bundle: &Path) -> Result<()> {
    let tools = provision::python_tools()?;
    let (python, _) = provision::python_env()?;
    run(Command::new(tools.join("maturin"))
        .args(["build", "--release", "--manifest-path"])
        .arg(workspace_root().join("crates/ferry-python/Cargo.toml"))
        .arg("--out")
        .arg(bundle.join("python"))
        .arg("--interpreter")
        .arg(python))
}

fn folder_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Writes the link-time stubs into `dir`: one shared library per CUDA library candle links
/// (with CUDA 13's soname) and the object `ferry_llvm_stub.o`; and `libcudart.so`, a link to
/// the real CUDA runtime of the nvcc at `cuda_home` (candle's kernels link it for their
/// mixture-of-experts library; the wheel ships only `libcudart.so.13`).
fn link_stubs(dir: &Path, cuda_home: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let cudart = dir.join("libcudart.so");
    let _ = std::fs::remove_file(&cudart);
    std::os::unix::fs::symlink(cuda_home.join("lib/libcudart.so.13"), &cudart)
        .context("linking nvcc's libcudart.so.13")?;
    let cudarc = crate_source("cudarc")?;
    for (module, lib, soname) in CANDLE_LINKED {
        let bindings = std::fs::read_to_string(cudarc.join("src").join(module).join("sys/mod.rs"))
            .with_context(|| format!("reading cudarc's {module} bindings"))?;
        let names = loaded_names(&bindings);
        if names.is_empty() {
            bail!("gpu-bundle: found no functions in cudarc's {module} bindings");
        }
        let source = dir.join(format!("{lib}.c"));
        std::fs::write(&source, stub_source(&names, lib))?;
        run(Command::new("cc")
            .args(["-shared", "-fPIC", "-O0", "-o"])
            .arg(dir.join(format!("lib{lib}.so")))
            .arg(format!("-Wl,-soname,{soname}"))
            .arg(&source))?;
    }
    let mut names = BTreeSet::new();
    for package in ["llvm-sys", "pliron-llvm", "cubecl-llvm"] {
        for file in rust_files(&crate_source(package)?.join("src"))? {
            names.extend(extern_c_functions(&std::fs::read_to_string(&file)?));
        }
    }
    if names.len() < 100 {
        bail!(
            "gpu-bundle: only {} LLVM C functions found in llvm-sys, pliron-llvm and cubecl-llvm",
            names.len()
        );
    }
    let source = dir.join("ferry_llvm_stub.c");
    std::fs::write(&source, stub_source(&names, "LLVM"))?;
    // An object, not an archive: the linker takes all of it wherever it stands on the line.
    run(Command::new("cc")
        .args(["-c", "-fPIC", "-O0", "-o"])
        .arg(dir.join("ferry_llvm_stub.o"))
        .arg(&source))
}

/// C source defining each of `names` as a function that reports the call and aborts: the
/// linker needs the symbols, nothing may call them.
fn stub_source(names: &BTreeSet<String>, what: &str) -> String {
    let mut c = format!(
        "/* Link-time stubs written by `cargo xtask gpu-bundle`: {what} is resolved for real at\n   run time on the GPU machine; a call that reaches a stub is a bundle bug. */\n#include <stdio.h>\n#include <stdlib.h>\nstatic void ferry_stub_called(const char *name) {{\n    fprintf(stderr, \"ferry gpu-bundle: link-time stub %s called ({what} is not loaded)\\n\", name);\n    abort();\n}}\n"
    );
    for name in names {
        c.push_str(&format!(
            "void {name}(void) {{ ferry_stub_called(\"{name}\"); }}\n"
        ));
    }
    c
}

/// The functions a cudarc binding file loads by name (`load::<_F>("cuInit")`), which are the
/// ones it declares for linking.
fn loaded_names(bindings: &str) -> BTreeSet<String> {
    bindings
        .split("load::<_F>(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The functions declared in the `extern "C" { ... }` blocks of a Rust source file.
fn extern_c_functions(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for block in source.split("extern \"C\" {").skip(1) {
        let mut depth = 1usize;
        let mut end = block.len();
        for (i, c) in block.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        for decl in block[..end].split("fn ").skip(1) {
            let name: String = decl
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && decl[name.len()..].trim_start().starts_with('(') {
                names.insert(name);
            }
        }
    }
    names
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(files)
}

/// The unpacked source of `package` at the version in Cargo.lock, from cargo's registry cache.
fn crate_source(package: &str) -> Result<PathBuf> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock"))?;
    let version = lock
        .split("[[package]]")
        .find_map(|entry| {
            let mut lines = entry.lines().map(str::trim);
            let name = lines.find_map(|l| l.strip_prefix("name = "))?;
            if name.trim_matches('"') != package {
                return None;
            }
            let version = entry
                .lines()
                .find_map(|l| l.trim().strip_prefix("version = "))?;
            Some(version.trim_matches('"').to_owned())
        })
        .with_context(|| format!("{package} is not in Cargo.lock"))?;
    let registry = crate::cargo_home().join("registry/src");
    let wanted = format!("{package}-{version}");
    for index in
        std::fs::read_dir(&registry).with_context(|| format!("reading {}", registry.display()))?
    {
        let dir = index?.path().join(&wanted);
        if dir.join("Cargo.toml").exists() {
            return Ok(dir);
        }
    }
    bail!(
        "gpu-bundle: {wanted} is not unpacked under {} (cargo fetches it with the build; run `cargo fetch`)",
        registry.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extern_blocks_yield_their_function_names_only() {
        let src = r#"
            pub type F = unsafe extern "C" fn(x: i32);
            extern "C" {
                pub fn LLVMContextCreate() -> LLVMContextRef;
                fn shim_write(m: *mut u8, f: extern "C" fn() -> i32) -> i32;
                pub static NOT_A_FN: i32;
            }
            fn outside() {}
        "#;
        let names: Vec<_> = extern_c_functions(src).into_iter().collect();
        assert_eq!(names, ["LLVMContextCreate", "shim_write"]);
        let loaded = loaded_names(r#"load::<_F>("cuInit") load::<_F>("cuMemAlloc_v2")"#);
        assert_eq!(
            loaded.into_iter().collect::<Vec<_>>(),
            ["cuInit", "cuMemAlloc_v2"]
        );
    }
}
