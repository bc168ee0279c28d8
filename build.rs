//! Build script of the `cove` crate.
//!
//! torch-sys links libtorch but its rpath does not reach the binaries of crates that
//! depend on it, and the linker's `--as-needed` drops `libtorch_cuda` (nothing refers to
//! it by symbol), which silently leaves CUDA unavailable. This script fixes both for
//! every binary, test and bench of this package, using the libtorch folder that
//! torch-sys exports as `DEP_TCH_LIBTORCH_LIB`.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not export DEP_TCH_LIBTORCH_LIB; run scripts/setup.sh");
    let lib_dir = Path::new(&lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    // Lets `cove doctor` name the libtorch this build is linked against.
    println!("cargo:rustc-env=COVE_LIBTORCH_LIB={}", lib_dir.display());
}
