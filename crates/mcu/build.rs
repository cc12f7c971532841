//! Links the firmware with cortex-m-rt's `link.x` and this crate's memory map (ARM only:
//! `memory/stm32f405.x`, or with feature `qemu-sram` `memory/qemu-netduinoplus2.x`, copied
//! to `$OUT_DIR/memory.x`, the name `link.x` includes; no `memory.x` may sit in the crate's
//! directory, which the linker searches first), and
//! embeds the deployment the firmware runs: the directory named by `TINYCNN_DEPLOY` (written
//! by `tinycnn deploy`; default `deployments/lenet-relu-int8`). Its `plan.bin` is checked
//! here with the same reader the firmware runs at start-up, and its arena and workspace sizes
//! become constants, so the firmware's buffers are static (`$OUT_DIR/deployment.rs`).
use std::{env, fs, path::PathBuf};
use tinycnn_kernels::deploy::{link, plan_checksum, words_as_bytes_mut, Plan};

/// The STM32F405's SRAM at 0x2000_0000 (`memory/stm32f405.x`'s RAM).
const CHIP_RAM: usize = 128 * 1024;
/// Bytes of RAM a plan must leave free for the stack, `.data` and the rest of `.bss`.
const STACK_RESERVE: usize = 4 * 1024;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TINYCNN_DEPLOY");
    let target = env::var("TARGET").unwrap_or_default();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    // The chip's memory map, or with feature `qemu-sram` the larger SRAM QEMU's
    // netduinoplus2 maps (for plans that need more RAM than the chip has).
    let qemu_sram = env::var_os("CARGO_FEATURE_QEMU_SRAM").is_some();
    let memory = if qemu_sram {
        "memory/qemu-netduinoplus2.x"
    } else {
        "memory/stm32f405.x"
    };
    println!("cargo:rerun-if-changed=memory");
    if target.starts_with("thumb") {
        fs::copy(memory, out.join("memory.x")).expect("copy the memory map to OUT_DIR");
        // cortex-m-rt's `device` feature includes the device's interrupt handler names:
        // the firmware enables no interrupt and names none (see `__INTERRUPTS` in main.rs).
        fs::write(out.join("device.x"), "/* no device interrupts */\n").expect("write device.x");
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
    // The arena and workspace are static (.bss); the stack takes the rest of the RAM from
    // the top down, and nothing stops it at .bss: a plan that leaves it too little would
    // corrupt its own activations, so it is refused here. The firmwares measured so far
    // (`stack_bytes`) use 2.3 KiB (f32) to 11.8 KiB (int8 with `selftest`) of stack.
    let buffers = 4 * (plan.arena_words() + plan.workspace_words());
    if target.starts_with("thumb") && !qemu_sram && buffers + STACK_RESERVE > CHIP_RAM {
        panic!(
            "TINYCNN_DEPLOY: {} needs {buffers} bytes of arena and workspace; with {STACK_RESERVE} \
             bytes for the stack that is over the STM32F405's {CHIP_RAM} bytes of SRAM (memory/stm32f405.x). \
             It cannot run on the chip as built; feature `qemu-sram` links it for QEMU's larger \
             SRAM (memory/qemu-netduinoplus2.x) to check its numbers in emulation",
            plan_path.display()
        );
    }
    // The test images and labels the firmware reads over semihosting at run time (not
    // embedded: 2.4 KB of flash), by absolute path, so that QEMU or a debugger opens them
    // on the host from any working directory.
    println!("cargo:rerun-if-env-changed=TINYCNN_TEST_DATA");
    let data = match env::var_os("TINYCNN_TEST_DATA") {
        Some(d) => manifest.join(PathBuf::from(d)),
        None => manifest.join("data"),
    };
    let host_path = |file: &str| {
        let p = data.join(file);
        let p = p
            .to_str()
            .unwrap_or_else(|| panic!("TINYCNN_TEST_DATA: {} is not UTF-8", p.display()));
        assert!(
            !p.contains('\0'),
            "TINYCNN_TEST_DATA: {p} contains a NUL byte"
        );
        format!("{p}\0")
    };
    let (images_path, labels_path) = (host_path("test-images.idx3"), host_path("test-labels.idx1"));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fs::copy(&plan_path, out.join("plan.bin")).expect("copy plan.bin to OUT_DIR");
    let workspace_words = tinycnn_kernels::deploy::fast_workspace_words(&plan);
    // Where each DSP convolution runs in the arena with this workspace
    // (`deploy::run_linked_scratch`): found here, so the firmware does not link the search.
    // The table ends after its last range (past its end, an op uses the workspace).
    let mut scratch: Vec<(usize, usize)> = (0..plan.ops())
        .map(|k| tinycnn_kernels::deploy::dsp_conv_scratch(&plan, k, workspace_words))
        .collect();
    while scratch.last().is_some_and(|r| r.0 >= r.1) {
        scratch.pop();
    }
    let scratch: Vec<String> = scratch.iter().map(|(a, b)| format!("({a}, {b})")).collect();
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
         pub const PLAN_LEN: usize = {};\n\
         /// The parts of the executor the plan needs (`tinycnn_kernels::deploy::link`).\n\
         pub const LINK: u32 = {:#x};\n\
         /// `deploy::plan_checksum` of the plan that `Plan::parse` accepted here.\n\
         pub const PLAN_CHECKSUM: u32 = {:#010x};\n\
         /// The host file of test images (IDX, 28x28), NUL-terminated for semihosting.\n\
         pub const IMAGES_PATH: &str = {images_path:?};\n\
         /// The host file of their labels (IDX), NUL-terminated for semihosting.\n\
         pub const LABELS_PATH: &str = {labels_path:?};\n\
         /// Per op, the arena bytes its DSP convolution takes as workspace (empty, or past\n\
         /// the table's end: the workspace; `deploy::dsp_conv_scratch` with `WORKSPACE_WORDS`).\n\
         pub const SCRATCH: [(u32, u32); {}] = [{}];\n",
        plan.precision().name(),
        plan.arena_words(),
        workspace_words,
        plan.macs(),
        bytes.len(),
        // The firmware runs the DSP kernels on the chip: only the convolution paths they
        // take with this workspace are linked.
        link::needed_by_dsp(&plan, workspace_words),
        plan_checksum(&bytes),
        scratch.len(),
        scratch.join(", "),
    );
    fs::write(out.join("deployment.rs"), code).expect("write deployment.rs");
}
