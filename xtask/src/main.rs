//! Project automation: `cargo xtask ci` (everything CI checks), `cargo xtask demo` (the main
//! job), `cargo xtask bench`, `cargo xtask fuzz`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  demo            run the three scenarios on every enabled backend and write the plots
  ci              fmt check, clippy -D warnings, all tests, docs with warnings denied
  bench [--quick] run the criterion benchmarks and write benches/RESULTS.md
  fuzz [--cases N] run the DLPack importer property fuzzer (default 100000 cases)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo(),
        Some("bench") => bench(args.iter().any(|a| a == "--quick")),
        Some("fuzz") => fuzz(parse_cases(&args)?),
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
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
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

/// Feature sets clippy and the tests run with.
fn feature_sets() -> Vec<Vec<&'static str>> {
    vec![vec![]]
}

fn ci() -> Result<()> {
    let start = Instant::now();
    run(cargo().args(["fmt", "--all", "--check"]))?;
    for features in feature_sets() {
        let mut cmd = cargo();
        cmd.args(["clippy", "--workspace", "--all-targets"]);
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
        run(cmd.args(["--", "-D", "warnings"]))?;
    }
    let mut totals = Totals::default();
    let report = root_target().join("suite-report.txt");
    let _ = std::fs::remove_file(&report);
    let report_env = report.to_string_lossy().into_owned();
    for features in feature_sets() {
        let joined = features.join(",");
        let mut args = vec!["--workspace"];
        if !features.is_empty() {
            args.extend(["--features", &joined]);
        }
        run_tests(&args, &[("FERRY_SUITE_REPORT", &report_env)], &mut totals)?;
    }
    let cases = std::fs::read_to_string(&report).unwrap_or_default();
    let mut lines: Vec<&str> = cases.lines().collect();
    lines.sort_unstable();
    println!("ci: backend matrix (cases per backend and pair):");
    for line in &lines {
        println!("  {line}");
    }
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
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

fn demo() -> Result<()> {
    run(cargo().args([
        "run",
        "--release",
        "--package",
        "ferry",
        "--example",
        "demo",
    ]))
}

fn bench(quick: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["bench", "--package", "ferry-benches"]);
    if quick {
        cmd.args(["--", "--quick"]);
    }
    run(&mut cmd)
}

fn fuzz(cases: u32) -> Result<()> {
    let mut totals = Totals::default();
    run_tests(
        &[
            "--release",
            "--package",
            "ferry-tests",
            "--test",
            "it",
            "properties::hostile",
        ],
        &[("FERRY_FUZZ_CASES", &cases.to_string())],
        &mut totals,
    )?;
    println!(
        "fuzz: {cases} cases per property, {} passed, {} failed",
        totals.passed, totals.failed
    );
    Ok(())
}
