//! Links the firmware with cortex-m-rt's `link.x` and this crate's `memory.x` (ARM only), and
//! embeds the deployment the firmware runs: the directory named by `TINYCNN_DEPLOY` (written
//! by `tinycnn deploy`; default `deployments/lenet-relu-int8`). Its `plan.bin` is checked
//! here with the same reader the firmware runs at start-up, and its arena and workspace sizes
//! become constants, so the firmware's buffers are static (`$OUT_DIR/deployment.rs`).
use std::{env, fs, path::PathBuf};
use tinycnn_kernels::deploy::{words_as_bytes_mut, Plan};

fn main() {
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TINYCNN_DEPLOY");
    let target = env::var("TARGET").unwrap_or_default();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    if target.starts_with("thumb") {
        fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x to OUT_DIR");
        println!("cargo:rustc-link-search={}", out.display());
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let dir = match env::var_os("TINYCNN_DEPLOY") {
        Some(d) => manifest.join(PathBuf::from(d)),
        None => manifest.join("deployments/lenet-relu-int8"),
    };
    let plan_path = dir.join("plan.bin");
    println!("cargo:rerun-if-changed={}", plan_path.display());
    let bytes = fs::read(&plan_path)
        .unwrap_or_else(|e| panic!("TINYCNN_DEPLOY: cannot read {}: {e}", plan_path.display()));
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let plan = Plan::parse(&words_as_bytes_mut(&mut words)[..bytes.len()])
        .unwrap_or_else(|e| panic!("TINYCNN_DEPLOY: {}: {e}", plan_path.display()));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fs::copy(&plan_path, out.join("plan.bin")).expect("copy plan.bin to OUT_DIR");
    let code = format!(
        "/// The deployment's directory name.\n\
         pub const NAME: &str = {name:?};\n\
         /// `f32` or `int8`.\n\
         pub const PRECISION: &str = {:?};\n\
         /// 32-bit words of activation arena the plan needs.\n\
         pub const ARENA_WORDS: usize = {};\n\
         /// 32-bit words of kernel workspace: what the plan needs, or more where the int8\n\
         /// convolutions run faster with more (`deploy::fast_workspace_words`).\n\
         pub const WORKSPACE_WORDS: usize = {};\n\
         /// Multiply-accumulates per inference.\n\
         pub const MACS: u64 = {};\n\
         /// Bytes of the plan.\n\
         pub const PLAN_LEN: usize = {};\n",
        plan.precision().name(),
        plan.arena_words(),
        tinycnn_kernels::deploy::fast_workspace_words(&plan),
        plan.macs(),
        bytes.len(),
    );
    fs::write(out.join("deployment.rs"), code).expect("write deployment.rs");
}
