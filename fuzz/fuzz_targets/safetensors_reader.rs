//! `tinycnn::io::from_bytes` (the safetensors reader behind `io::load`) on arbitrary bytes:
//! it returns a state dict or an error, never panics, hangs or allocates by the header's
//! claim (a shape of 2^60 elements, a header length of 2^63, offsets past the end: all
//! errors). An accepted file must survive a round trip: `to_bytes` then `from_bytes` gives
//! the same names, shapes and (bitwise) values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::io::{from_bytes, to_bytes};

fuzz_target!(|data: &[u8]| {
    let Ok(state) = from_bytes(data) else { return };
    let bytes = to_bytes(&state).expect("writing an accepted state dict");
    let again = from_bytes(&bytes).expect("reading back what to_bytes wrote");
    assert_eq!(
        state.len(),
        again.len(),
        "tensor count changed in a round trip"
    );
    for (name, t) in state.iter() {
        let u = again
            .get(name)
            .unwrap_or_else(|| panic!("tensor `{name}` lost in a round trip"));
        assert_eq!(t.shape(), u.shape(), "tensor `{name}`: shape changed");
        let (a, b): (Vec<u32>, Vec<u32>) = (
            t.to_vec().iter().map(|v| v.to_bits()).collect(),
            u.to_vec().iter().map(|v| v.to_bits()).collect(),
        );
        assert!(a == b, "tensor `{name}`: values changed in a round trip");
    }
});
