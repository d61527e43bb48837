//! Gives ferry-testing's test and doctest binaries an rpath to libtorch when feature `tch` links
//! it (as the facade's build script does for its own).

fn main() {
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
}
