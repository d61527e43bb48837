//! Gives the bench binaries an rpath to libtorch when tch is enabled, so it runs without
//! LD_LIBRARY_PATH.
fn main() {
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
}
