//! Compiles the DLPack shim against the libtorch headers torch-sys found, and gives this
//! crate's own binaries an rpath to libtorch.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        panic!(
            "torch-sys did not report a libtorch lib dir; set LIBTORCH or run through `cargo xtask`"
        );
    };
    let root = lib
        .parent()
        .expect("libtorch lib dir has a parent")
        .to_path_buf();
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-w")
        .file("src/shim.cpp")
        .compile("ferry_tch_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // Re-exported for dependents' build scripts (DEP_FERRY_TCH_SHIM_LIBTORCH_LIB): they add the
    // same rpath to their test, bench and example binaries.
    println!("cargo:libtorch_lib={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // Where `load_cuda` looks for libtorch_cuda.so first.
    println!("cargo:rustc-env=FERRY_TCH_LIBTORCH_LIB={}", lib.display());
}
