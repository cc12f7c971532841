//! With feature `emu`, compiles the CUDA kernels for the host (kernels-cuda/emu) so the
//! emulated device can run them. Without it, nothing to build: the PTX is committed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "emu")]
    emu();
}

#[cfg(feature = "emu")]
fn emu() {
    use std::path::Path;
    let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernels-cuda");
    for dir in [kernels.clone(), kernels.join("emu")] {
        for entry in std::fs::read_dir(&dir).expect("kernels-cuda is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        // Emulated kernels run thousands of fibers per launch: optimise even in dev builds.
        .opt_level(2)
        .warnings(false)
        .flag_if_supported("-w")
        .file(kernels.join("emu/entries.cpp"))
        .compile("tinycnn_cuda_emu");
}
