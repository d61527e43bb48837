//! Gives the bench binaries an rpath to libtorch when tch is enabled, so they run without
//! LD_LIBRARY_PATH; links the GPU bundle's stubs when `cargo xtask gpu-bundle` asks.
fn main() {
    link_gpu_bundle_stubs();
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
}

include!("../xtask/gpu-bundle/link_stubs.rs");
