//! `cargo xtask layers` (and a step of `ci`): ferry-python's modules use each other in one
//! direction only, in the layers its `lib.rs` documents, and only its `raw` module calls
//! CPython's C API. A source check, no build: it reads `crates/ferry-python/src/*.rs`.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// ferry-python's modules by layer, lowest first, each layer's modules in their order too: a
/// module may name (`crate::m::…`) only the modules before it in this list. The crate root
/// (`lib.rs`) comes after all of them, so no module names a root item (`crate::f`).
pub const LAYERS: [(&str, &[&str]); 3] = [
    (
        "raw CPython",
        &["error", "raw", "deferred", "gate", "lease"],
    ),
    (
        "protocols",
        &["capsule", "exchange", "torch", "import", "arrow", "numpy"],
    ),
    (
        "class",
        &["class", "method", "object", "extract", "files", "batch"],
    ),
];

/// The one module that calls CPython's C API (`ffi::Name(…)`) and the dynamic linker (`libc`).
const RAW: &str = "raw";

/// Checks ferry-python's sources under `root` (the workspace).
pub fn check(root: &Path) -> Result<()> {
    let src = root.join("crates/ferry-python/src");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "rs") {
            let name = path
                .file_stem()
                .context("a source file without a name")?
                .to_string_lossy()
                .into_owned();
            sources.push((name, std::fs::read_to_string(&path)?));
        }
    }
    sources.sort();
    let order: Vec<&str> = LAYERS
        .iter()
        .flat_map(|(_, modules)| *modules)
        .copied()
        .collect();
    let problems = violations(&order, &sources);
    if !problems.is_empty() {
        bail!(
            "layers: ferry-python's modules break their layering (xtask/src/layers.rs):\n  {}",
            problems.join("\n  ")
        );
    }
    println!(
        "layers: ferry-python's {} modules use each other downwards only; only `{RAW}` calls CPython",
        order.len()
    );
    Ok(())
}

/// What breaks the layering in `sources` (module name, text; `lib` is the crate root) under
/// `order` (lowest first): an upward or root path, a module in no layer or with no file, and a
/// C-API call outside [`RAW`].
fn violations(order: &[&str], sources: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let declared = sources
        .iter()
        .find(|(name, _)| name == "lib")
        .map(|(_, text)| declared_modules(text))
        .unwrap_or_default();
    for module in order {
        if !sources.iter().any(|(name, _)| name == module) {
            problems.push(format!("`{module}` is listed in LAYERS but has no file"));
        }
    }
    for module in &declared {
        if !order.contains(&module.as_str()) {
            problems.push(format!(
                "lib.rs declares `mod {module}`, which is in no layer: add it to LAYERS"
            ));
        }
    }
    for (module, text) in sources {
        if module == "lib" {
            continue;
        }
        let Some(at) = order.iter().position(|m| m == module) else {
            problems.push(format!(
                "{module}.rs is in no layer: add `{module}` to LAYERS"
            ));
            continue;
        };
        for (offset, target) in crate_paths(text) {
            let line = line_of(text, offset);
            match order.iter().position(|m| *m == target) {
                Some(to) if to > at => problems.push(format!(
                    "{module}.rs:{line} names `crate::{target}`, a module above it"
                )),
                Some(_) => {}
                None if sources.iter().any(|(name, _)| *name == target) => problems.push(
                    format!("{module}.rs:{line} names `crate::{target}`, a module in no layer"),
                ),
                None => problems.push(format!(
                    "{module}.rs:{line} names `crate::{target}`, an item of the crate root (lib.rs), which is above every module: move it down, or name its own module"
                )),
            }
        }
        for offset in find_all(text, "super::") {
            problems.push(format!(
                "{module}.rs:{} names `super::`: name modules with `crate::` paths (which this check reads)",
                line_of(text, offset)
            ));
        }
        if module != RAW {
            for (offset, call) in c_api_calls(text) {
                problems.push(format!(
                    "{module}.rs:{} {call}: only {RAW}.rs calls CPython's C API and the dynamic linker",
                    line_of(text, offset)
                ));
            }
        }
    }
    problems
}

/// The modules `mod name;` declares in the crate root.
fn declared_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("mod ")?.strip_suffix(';')?;
            is_identifier(rest).then(|| rest.to_string())
        })
        .collect()
}

/// Each `crate::` path's first segment, with its offset: `crate::a::b` gives `a`, and
/// `crate::{a::b, c}` gives `a` and `c`.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for start in find_all(text, "crate::") {
        // Not the tail of another name (`$crate::` is the crate too).
        if text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[start + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = identifier_at(&group[i..]);
                        if !name.is_empty() {
                            found.push((start, name.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = identifier_at(rest);
            if !name.is_empty() {
                found.push((start, name.to_string()));
            }
        }
    }
    found
}

/// Calls of CPython's C API (`ffi::Name(` or `pyo3::ffi::Name(`, not another crate's `ffi`
/// module) and every use of `libc`, each said as "calls `ffi::Name`" or "uses `libc::name`",
/// with their offsets.
fn c_api_calls(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for start in find_all(text, "ffi::") {
        let before = &text[..start];
        let pyo3 = if let Some(path) = before.strip_suffix("::") {
            path.ends_with("pyo3")
                && !path[..path.len() - 4]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        } else {
            !before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        };
        let name = identifier_at(&text[start + "ffi::".len()..]);
        let after = &text[start + "ffi::".len() + name.len()..];
        if pyo3 && !name.is_empty() && after.starts_with('(') {
            found.push((start, format!("calls `ffi::{name}`")));
        }
    }
    for start in find_all(text, "libc::") {
        if !text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        {
            let name = identifier_at(&text[start + "libc::".len()..]);
            found.push((start, format!("uses `libc::{name}`")));
        }
    }
    found
}

fn find_all<'a>(text: &'a str, pattern: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(pattern).map(|(i, _)| i)
}

/// The identifier `text` starts with (empty if none).
fn identifier_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty() && identifier_at(text) == text
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect()
    }

    /// The real crate keeps its layers (what `ci` checks too).
    #[test]
    fn ferry_python_keeps_its_layers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        check(&root).unwrap();
    }

    #[test]
    fn upward_root_and_grouped_paths_are_found() {
        let order = ["low", "mid", "high"];
        let found = violations(
            &order,
            &sources(&[
                ("lib", "mod low;\nmod mid;\nmod high;\n"),
                (
                    "low",
                    "use crate::mid::Thing;\n/// [`x`](crate::to_py_err)\n",
                ),
                (
                    "mid",
                    "use crate::{low::A, high::{B, C}};\nuse crate::mid::D;\n",
                ),
                (
                    "high",
                    "use crate::{low, mid};\nfn f() { $crate::low::g() }\n",
                ),
            ]),
        );
        assert_eq!(
            found,
            [
                "low.rs:1 names `crate::mid`, a module above it",
                "low.rs:2 names `crate::to_py_err`, an item of the crate root (lib.rs), which is above every module: move it down, or name its own module",
                "mid.rs:1 names `crate::high`, a module above it",
            ]
        );
    }

    #[test]
    fn c_api_calls_outside_raw_and_missing_modules_are_found() {
        let order = ["raw", "capsule"];
        let found = violations(
            &order,
            &sources(&[
                ("lib", "mod raw;\nmod capsule;\nmod stray;\n"),
                (
                    "raw",
                    "unsafe { ffi::PyCapsule_New(p, n, None) }; libc::dlsym(a, b);\n",
                ),
                (
                    "capsule",
                    "use pyo3::ffi;\nlet d: ffi::PyMethodDef = ffi::PyMethodDef::zeroed();\n\
                     ferry_arrow::ffi::import(a, b);\nunsafe { pyo3::ffi::Py_None() };\n\
                     unsafe { ffi::PyCapsule_IsValid(o, n) };\nlibc::dladdr(a, b);\n\
                     use crate::stray::f;\n",
                ),
                ("stray", ""),
            ]),
        );
        assert_eq!(
            found,
            [
                "lib.rs declares `mod stray`, which is in no layer: add it to LAYERS",
                "capsule.rs:7 names `crate::stray`, a module in no layer",
                "capsule.rs:4 calls `ffi::Py_None`: only raw.rs calls CPython's C API and the dynamic linker",
                "capsule.rs:5 calls `ffi::PyCapsule_IsValid`: only raw.rs calls CPython's C API and the dynamic linker",
                "capsule.rs:6 uses `libc::dladdr`: only raw.rs calls CPython's C API and the dynamic linker",
                "stray.rs is in no layer: add `stray` to LAYERS",
            ]
        );
    }
}
