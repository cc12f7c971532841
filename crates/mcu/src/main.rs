//! LeNet firmware for a Cortex-M4F (STM32F405, QEMU `netduinoplus2`).
//!
//! Embeds one weights file and the test images of `data/`, classifies each image, prints one
//! line per image over semihosting and exits with status 0 (or 1 on any error):
//!
//! ```text
//! model lenet-relu f32
//! image 0 label 9 predicted 9 logits <10 values> ticks 12345
//! calibration insns 2000001 ticks 336000
//! stack_bytes 1234
//! done 8 images 7 correct
//! ```
//! f32 logits are printed as their IEEE bit patterns (hex), int8 logits as the raw i32
//! accumulators, so the host test can compare them exactly. `ticks` is the SysTick count
//! (core clock) of one inference; the calibration line times a loop of known instruction
//! count, so under `qemu -icount shift=0` ticks convert to instructions.
//!
//! Features: `int8` runs the int8 model, `sigmoid` d2l's original LeNet (else `lenet-relu`),
//! `plain` the plain int8 kernels instead of the `SMLAD` ones (for comparison), `selftest`
//! (int8) checks on the board, before classifying, that the `SMLAD` kernels agree exactly
//! with the naive twins on a spread of shapes and with the plain kernels on a whole image:
//!
//! ```text
//! selftest dsp conv 40 linear 40 network 1 ok
//! ```
//!
//! Cycles: the firmware enables the DWT cycle counter and prints `cycles N` after each
//! image and for a validation loop of fixed instruction mix (`cycles n/a in QEMU` where the
//! counter does not count, as in QEMU). `scripts/mcu-cycles.py` estimates the cycles from
//! a QEMU trace instead, between the `cycles_mark_*` functions below.
#![no_std]
#![no_main]

#[cfg(not(target_arch = "arm"))]
compile_error!("the firmware builds only for thumbv7em-none-eabihf (see crates/mcu/README.md)");

use cortex_m::peripheral::{syst::SystClkSource, DWT, SYST};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
#[cfg(feature = "int8")]
use tinycnn_mcu::lenet::I8Kernels;
use tinycnn_mcu::lenet::{self, Variant, IMAGE_PIXELS};
use tinycnn_mcu::{idx, Aligned, Error, Safetensors};

#[cfg(feature = "sigmoid")]
const VARIANT: Variant = Variant::Sigmoid;
#[cfg(not(feature = "sigmoid"))]
const VARIANT: Variant = Variant::Relu;

macro_rules! weights_file {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/weights/", $name))
    };
}

#[cfg(all(not(feature = "int8"), not(feature = "sigmoid")))]
static WEIGHTS: &Aligned<[u8]> = &Aligned(*weights_file!("lenet-relu-f32.safetensors"));
#[cfg(all(not(feature = "int8"), feature = "sigmoid"))]
static WEIGHTS: &Aligned<[u8]> = &Aligned(*weights_file!("lenet-f32.safetensors"));
#[cfg(all(feature = "int8", not(feature = "sigmoid")))]
static WEIGHTS: &Aligned<[u8]> = &Aligned(*weights_file!("lenet-relu-int8.safetensors"));
#[cfg(all(feature = "int8", feature = "sigmoid"))]
static WEIGHTS: &Aligned<[u8]> = &Aligned(*weights_file!("lenet-int8.safetensors"));

static IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/test-images.idx3"
));
static LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/test-labels.idx1"
));

#[cfg(not(feature = "int8"))]
static mut SCRATCH: tinycnn_mcu::F32Scratch = tinycnn_mcu::F32Scratch::new();
#[cfg(feature = "int8")]
static mut SCRATCH: tinycnn_mcu::I8Scratch = tinycnn_mcu::I8Scratch::new();

#[cfg(all(feature = "int8", feature = "selftest"))]
mod selftest;

/// The int8 kernels the firmware classifies with.
#[cfg(all(feature = "int8", feature = "plain"))]
const KERNELS: I8Kernels = I8Kernels::Plain;
#[cfg(all(feature = "int8", not(feature = "plain")))]
const KERNELS: I8Kernels = I8Kernels::NATIVE_BEST;

/// SysTick reload: the full 24 bits.
const RELOAD: u32 = 0x00ff_ffff;

#[entry]
fn main() -> ! {
    let mut out = match hio::hstdout() {
        Ok(o) => o,
        Err(()) => exit(false),
    };
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        exit(false)
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(RELOAD);
    cp.SYST.enable_counter();
    // DEMCR.TRCENA, then DWT_CTRL.CYCCNTENA: the core cycle counter of a real board.
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();
    // SAFETY: the only reference to SCRATCH, taken once before anything else could run.
    let scratch = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
    let ok = match run(&mut out, &mut cp.SYST, scratch) {
        Ok(()) => true,
        Err(e) => {
            let (kind, name) = e.summary();
            put(&mut out, &["error: ", kind, " ", name, "\n"]);
            false
        }
    };
    put(&mut out, &["stack_bytes "]);
    put_u32(&mut out, stack_used() as u32);
    put(&mut out, &["\n"]);
    exit(ok)
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

// Output without `core::fmt`, whose machinery costs several KiB of a 96 KiB flash budget.

fn put(out: &mut hio::HostStream, parts: &[&str]) {
    for p in parts {
        let _ = out.write_all(p.as_bytes());
    }
}

fn put_u32(out: &mut hio::HostStream, mut v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let _ = out.write_all(&buf[i..]);
}

fn put_i32(out: &mut hio::HostStream, v: i32) {
    if v < 0 {
        put(out, &["-"]);
    }
    put_u32(out, v.unsigned_abs());
}

fn put_hex(out: &mut hio::HostStream, v: u32) {
    let mut buf = [0u8; 8];
    for (i, b) in buf.iter_mut().enumerate() {
        let nib = (v >> (28 - 4 * i)) & 0xf;
        *b = b"0123456789abcdef"[nib as usize];
    }
    let _ = out.write_all(&buf);
}

/// SysTick ticks spent in `f` (at most `RELOAD`; the counter counts down).
fn timed<T>(syst: &mut SYST, f: impl FnOnce() -> T) -> (T, u32) {
    syst.clear_current();
    let start = SYST::get_current();
    let v = f();
    let end = SYST::get_current();
    (v, start.wrapping_sub(end) & RELOAD)
}

/// DWT cycles spent in `f`, or `None` where the counter does not count (QEMU implements no
/// DWT: its CYCCNT reads as a constant).
fn cycles<T>(f: impl FnOnce() -> T) -> (T, Option<u32>) {
    let start = DWT::cycle_count();
    let v = f();
    let end = DWT::cycle_count();
    (v, (end != start).then(|| end.wrapping_sub(start)))
}

fn put_cycles(out: &mut hio::HostStream, c: Option<u32>) {
    match c {
        Some(c) => {
            put(out, &[" cycles "]);
            put_u32(out, c);
        }
        None => put(out, &[" cycles n/a in QEMU"]),
    }
}

// Region markers for scripts/mcu-cycles.py: it counts the instructions executed between a
// call of a `*_begin` and the next call of its `*_end` in a QEMU trace. Distinct bodies, so
// the linker cannot fold them into one address.

/// Start of one inference.
#[no_mangle]
#[inline(never)]
pub extern "C" fn cycles_mark_inference_begin() {
    // SAFETY: no operands, no effect.
    unsafe { core::arch::asm!("nop", options(nomem, nostack, preserves_flags)) }
}

/// End of one inference.
#[no_mangle]
#[inline(never)]
pub extern "C" fn cycles_mark_inference_end() {
    // SAFETY: no operands, no effect.
    unsafe { core::arch::asm!("nop", "nop", options(nomem, nostack, preserves_flags)) }
}

/// Start of the validation loop.
#[no_mangle]
#[inline(never)]
pub extern "C" fn cycles_mark_loop_begin() {
    // SAFETY: no operands, no effect.
    unsafe {
        core::arch::asm!(
            "nop",
            "nop",
            "nop",
            options(nomem, nostack, preserves_flags)
        )
    }
}

/// End of the validation loop.
#[no_mangle]
#[inline(never)]
pub extern "C" fn cycles_mark_loop_end() {
    // SAFETY: no operands, no effect.
    unsafe {
        core::arch::asm!(
            "nop",
            "nop",
            "nop",
            "nop",
            options(nomem, nostack, preserves_flags)
        )
    }
}

/// Iterations of [`validation_loop`].
const LOOP_N: u32 = 1000;

/// A loop whose cycle count the Cortex-M4 TRM fixes (Table 3-1 and the load/store pipelining
/// rules of its section 3.3): per iteration `LDR` 2, `LDR` after it 1 (pipelined),
/// `SMLAD` 1, `MLA` 1, `STR` immediate offset 1, `SUBS` 1, `BNE` taken 1 + P; so
/// `1 + N * (8 + P) - P` cycles with the final, untaken `BNE` and the `MOV` (P = pipeline
/// refill, 1 to 3). scripts/mcu-cycles.py must reproduce this from the trace.
#[inline(never)]
fn validation_loop() {
    let mut buf = [3u32, 5, 0];
    // SAFETY: reads buf[0], buf[1] and writes buf[2], inside `buf`; the other registers are
    // declared scratch.
    unsafe {
        core::arch::asm!(
            "mov {n}, {count}",
            "2:",
            "ldr {a}, [{p}]",
            "ldr {b}, [{p}, #4]",
            "smlad {acc}, {a}, {b}, {acc}",
            "mla {acc2}, {a}, {b}, {acc2}",
            "str {acc}, [{p}, #8]",
            "subs {n}, {n}, #1",
            "bne 2b",
            n = out(reg) _,
            count = in(reg) LOOP_N,
            p = in(reg) buf.as_mut_ptr(),
            a = out(reg) _,
            b = out(reg) _,
            acc = inout(reg) 0u32 => _,
            acc2 = inout(reg) 0u32 => _,
            options(nostack),
        );
    }
    core::hint::black_box(&buf);
}

#[cfg(not(feature = "int8"))]
fn run(
    out: &mut hio::HostStream,
    syst: &mut SYST,
    scratch: &mut tinycnn_mcu::F32Scratch,
) -> Result<(), Error> {
    let st = Safetensors::parse(&WEIGHTS.0)?;
    let model = tinycnn_mcu::LenetF32::from_safetensors(&st, VARIANT)?;
    put(out, &["model ", VARIANT.name(), " f32\n"]);
    classify(out, syst, |img| {
        let l = model.logits(img, scratch)?;
        Ok((lenet::argmax(&l), l.map(f32::to_bits)))
    })
}

#[cfg(feature = "int8")]
fn run(
    out: &mut hio::HostStream,
    syst: &mut SYST,
    scratch: &mut tinycnn_mcu::I8Scratch,
) -> Result<(), Error> {
    let st = Safetensors::parse(&WEIGHTS.0)?;
    let model = tinycnn_mcu::LenetI8::from_safetensors(&st, VARIANT)?;
    put(
        out,
        &["model ", VARIANT.name(), " int8 ", KERNELS.name(), "\n"],
    );
    #[cfg(feature = "selftest")]
    {
        let (a, _, ws) = scratch.buffers();
        if let Err(kernel) = selftest::kernels(a, ws) {
            put(
                out,
                &[
                    "selftest FAILED: dsp ",
                    kernel,
                    " differs from the reference\n",
                ],
            );
            return Err(Error::Value {
                name: "selftest",
                what: "dsp kernel differs from the reference",
            });
        }
        // The whole network, both kernel sets, on the first image: identical logits.
        let img = &idx::images(IMAGES)?[0];
        let plain = model.logits_i32_with(img, scratch, I8Kernels::Plain)?;
        let dsp = model.logits_i32_with(img, scratch, I8Kernels::Dsp)?;
        if plain != dsp {
            put(
                out,
                &["selftest FAILED: dsp network logits differ from plain\n"],
            );
            return Err(Error::Value {
                name: "selftest",
                what: "dsp network logits differ from plain",
            });
        }
        put(out, &["selftest dsp conv "]);
        put_u32(out, selftest::CASES);
        put(out, &[" linear "]);
        put_u32(out, selftest::CASES);
        put(out, &[" network 1 ok\n"]);
    }
    classify(out, syst, |img| {
        let acc = model.logits_i32_with(img, scratch, KERNELS)?;
        // Same dequantization as LenetI8::predict, from the accumulators already computed.
        let mut f = [0.0f32; lenet::CLASSES];
        for ((o, &a), &ws) in f.iter_mut().zip(&acc).zip(model.fc3.1) {
            *o = a as f32 * ws * model.fc3_in_scale;
        }
        Ok((lenet::argmax(&f), acc.map(|a| a as u32)))
    })
}

/// Classifies every embedded image with `infer` (class, logits as printable words).
fn classify(
    out: &mut hio::HostStream,
    syst: &mut SYST,
    mut infer: impl FnMut(&[u8; IMAGE_PIXELS]) -> Result<(usize, [u32; lenet::CLASSES]), Error>,
) -> Result<(), Error> {
    let images = idx::images(IMAGES)?;
    let labels = idx::labels(LABELS)?;
    let mut correct = 0;
    for (i, (img, &label)) in images.iter().zip(labels).enumerate() {
        let ((r, dwt), ticks) = timed(syst, || {
            cycles(|| {
                cycles_mark_inference_begin();
                let r = infer(img);
                cycles_mark_inference_end();
                r
            })
        });
        let (class, words) = r?;
        correct += (class == label as usize) as usize;
        put(out, &["image "]);
        put_u32(out, i as u32);
        put(out, &[" label "]);
        put_u32(out, label as u32);
        put(out, &[" predicted "]);
        put_u32(out, class as u32);
        put(out, &[" logits "]);
        for (j, &w) in words.iter().enumerate() {
            if j > 0 {
                put(out, &[","]);
            }
            if cfg!(feature = "int8") {
                put_i32(out, w as i32);
            } else {
                put_hex(out, w);
            }
        }
        put(out, &[" ticks "]);
        put_u32(out, ticks);
        put_cycles(out, dwt);
        put(out, &["\n"]);
    }
    let ((), dwt) = cycles(|| {
        cycles_mark_loop_begin();
        validation_loop();
        cycles_mark_loop_end();
    });
    put(out, &["validation loop iterations "]);
    put_u32(out, LOOP_N);
    put_cycles(out, dwt);
    put(out, &["\n"]);
    let (insns, ticks) = calibration(syst);
    put(out, &["calibration insns "]);
    put_u32(out, insns);
    put(out, &[" ticks "]);
    put_u32(out, ticks);
    put(out, &["\ndone "]);
    put_u32(out, images.len() as u32);
    put(out, &[" images "]);
    put_u32(out, correct as u32);
    put(out, &[" correct\n"]);
    Ok(())
}

/// Times a loop of exactly `1 + 2 * N` instructions (`mov`, then `N` x `subs` + `bne`).
fn calibration(syst: &mut SYST) -> (u32, u32) {
    const N: u32 = 1_000_000;
    let ((), ticks) = timed(syst, || unsafe {
        // SAFETY: only touches the scratch register it declares.
        core::arch::asm!(
            "mov {n}, {count}",
            "2:",
            "subs {n}, {n}, #1",
            "bne 2b",
            n = out(reg) _,
            count = in(reg) N,
            options(nomem, nostack),
        );
    });
    (1 + 2 * N, ticks)
}

/// Bytes of stack ever used: cortex-m-rt (`paint-stack`) fills the stack region with
/// 0xCCCCCCCC at reset; the lowest overwritten word marks the deepest point reached.
fn stack_used() -> usize {
    extern "C" {
        static _stack_start: u32;
        static _stack_end: u32;
    }
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut p = core::ptr::addr_of!(_stack_end) as usize;
    while p < top {
        // SAFETY: [_stack_end, _stack_start) is RAM reserved for the stack by the linker.
        if unsafe { core::ptr::read_volatile(p as *const u32) } != 0xCCCC_CCCC {
            break;
        }
        p += 4;
    }
    top - p
}

/// Prints where the panic happened (not the message: formatting arbitrary panic payloads
/// pulls several KiB of `core::fmt` into a flash budget of 96 KiB).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Ok(mut out) = hio::hstdout() {
        match info.location() {
            Some(l) => {
                put(&mut out, &["panic at ", l.file(), ":"]);
                put_u32(&mut out, l.line());
                put(&mut out, &["\n"]);
            }
            None => put(&mut out, &["panic\n"]),
        }
    }
    exit(false)
}
