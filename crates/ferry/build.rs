//! Stops a build that asks for Candle's and Burn's CUDA backends together before cudarc fails
//! with an unhelpful error, and gives example and test binaries an rpath to libtorch.

fn main() {
    let on = |f: &str| std::env::var_os(format!("CARGO_FEATURE_{f}")).is_some();
    if on("CANDLE") && on("BURN") && on("CUDA") {
        println!("cargo::error={}", CUDA_CLASH);
        std::process::exit(1);
    }
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
}

const CUDA_CLASH: &str = "ferry: features `candle` + `burn` + `cuda` cannot be built together: candle-core 0.11 builds cudarc \
with `dynamic-linking` while burn 0.22 (cubecl-cuda) needs `dynamic-loading`, and one cudarc cannot do both. Enable `cuda` \
with one of them (features = [\"candle\", \"cuda\"] or [\"burn\", \"cuda\"], default-features = false) and exchange tensors \
with the other over DLPack.";
