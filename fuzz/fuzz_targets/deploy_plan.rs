//! `tinycnn_kernels::deploy::Plan::parse` on arbitrary bytes: an error or a plan, never a
//! panic, hang or out-of-bounds access. An accepted plan (with arena and workspace of at most
//! 1 MiB) is run on a constant input; an int8 plan gives the same output bit for bit with
//! the plain, DSP and reference kernels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn_kernels::deploy::format::Precision;
use tinycnn_kernels::deploy::{self, words_as_bytes, words_as_bytes_mut, Input, Int8Kernels, Plan};

const LIMIT_WORDS: usize = 1 << 18;

fuzz_target!(|data: &[u8]| {
    // The reader needs 4-byte aligned bytes, as the firmware's `Aligned` plan is.
    let mut words = vec![0u32; data.len().div_ceil(4)];
    words_as_bytes_mut(&mut words)[..data.len()].copy_from_slice(data);
    let Ok(plan) = Plan::parse(&words_as_bytes(&words)[..data.len()]) else {
        return;
    };
    let n = plan.input().elements();
    if plan.arena_words() > LIMIT_WORDS || plan.workspace_words() > LIMIT_WORDS || n > 1 << 20 {
        return;
    }
    // Work is bounded by the MACs the reader checked against the ops.
    if plan.macs() > 50_000_000 {
        return;
    }
    let x = vec![0.25f32; n];
    let o = plan.output_value();
    let (a, b) = (o.offset as usize, o.offset as usize + o.bytes());
    let kernels: &[Int8Kernels] = match plan.precision() {
        Precision::F32 => &[Int8Kernels::Plain],
        Precision::Int8 => &[Int8Kernels::Reference, Int8Kernels::Plain, Int8Kernels::Dsp],
    };
    let mut first: Option<Vec<u8>> = None;
    for &k in kernels {
        let mut arena = vec![0u32; plan.arena_words()];
        let mut ws = vec![0u32; plan.workspace_words()];
        let r = deploy::run(&plan, Input::F32(&x), &mut arena, &mut ws, k);
        let out = r.map(|()| words_as_bytes(&arena)[a..b].to_vec());
        match (&first, out) {
            (None, Ok(v)) => first = Some(v),
            (Some(f), Ok(v)) => assert_eq!(f, &v, "{k:?} differs from the reference"),
            (_, Err(_)) => return,
        }
        let mut logits = vec![0.0f32; o.elements()];
        let _ = deploy::logits(&plan, &arena, &mut logits);
    }
});
