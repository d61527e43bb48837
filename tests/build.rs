//! Gives the test binary rpaths to libtorch (when tch is enabled) and to libpython (for the
//! embedded interpreter), so it runs without LD_LIBRARY_PATH; links the GPU bundle's stubs
//! when `cargo xtask gpu-bundle` asks.
fn main() {
    link_gpu_bundle_stubs();
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_some()
        && let Some(lib) = pyo3_build_config::get().lib_dir()
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}

include!("../xtask/gpu-bundle/link_stubs.rs");
