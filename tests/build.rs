//! Gives the test binary rpaths to libtorch (when tch is enabled) and to libpython (for the
//! embedded interpreter), so it runs without LD_LIBRARY_PATH.
fn main() {
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_some()
        && let Some(lib) = pyo3_build_config::get().lib_dir()
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
