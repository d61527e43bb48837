// Included by the build script of tests/. `cargo xtask gpu-bundle` links its CUDA test and
// bench binaries against generated stubs (see xtask/src/gpu_bundle.rs): candle's CUDA
// libraries, and LLVM for Burn's unused compiler. Only these binaries link them, so no
// dependency is rebuilt for the bundle.
fn link_gpu_bundle_stubs() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../xtask/gpu-bundle/link_stubs.rs");
    println!("cargo:rerun-if-env-changed=FERRY_LINK_STUBS");
    if let Some(stubs) = std::env::var_os("FERRY_LINK_STUBS") {
        let stubs = stubs.to_string_lossy();
        println!("cargo:rustc-link-search=native={stubs}");
        if std::env::var_os("CARGO_FEATURE_BURN_CUDA_NVRTC").is_some() {
            println!("cargo:rustc-link-arg={stubs}/ferry_llvm_stub.o");
        }
    }
}
