//! `tinycnn::onnx::read` on arbitrary bytes: it returns a model or an error, never panics,
//! hangs or allocates by a file's claim (a tensor of 2^60 elements, a length prefix past the
//! end, nesting deeper than prost's recursion limit: all errors). An accepted model must
//! survive a round trip: `write` then `read` gives the same architecture (a Dropout read back
//! as Identity) and bitwise the same tensors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::nn::arch::LayerSpec;
use tinycnn::onnx::{read, write};

fuzz_target!(|data: &[u8]| {
    let Ok(model) = read(data) else { return };
    let bytes = write(&model.architecture, &model.tensors).expect("writing an accepted model");
    let again = read(&bytes).expect("reading back what write wrote");
    let mut want = model.architecture.clone();
    for n in &mut want.nodes {
        if let LayerSpec::Dropout { .. } = n.layer {
            n.layer = LayerSpec::Identity;
        }
    }
    assert_eq!(again.architecture, want, "architecture changed in a round trip");
    assert_eq!(model.tensors.len(), again.tensors.len(), "tensor count changed");
    for ((n, s, d), (n2, s2, d2)) in model.tensors.iter().zip(&again.tensors) {
        assert_eq!((n, s), (n2, s2), "tensor name or shape changed");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(d) == bits(d2), "tensor `{n}`: values changed in a round trip");
    }
});
