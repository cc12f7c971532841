//! `tinycnn::data::parse_idx` on arbitrary bytes: it returns a value or an error, never
//! panics, hangs or allocates by a header's claim (headers may declare up to 2^96 elements).
//!
//! The first byte picks the container: odd = the rest as is (the raw reader), even = the
//! rest gzip-compressed first (so the fuzzer also drives the gzip path with valid streams;
//! corrupt gzip comes from raw inputs starting 1f 8b). An accepted array must be
//! consistent (1 to 3 non-zero dims whose product is the element count) and, for raw input,
//! re-encode to exactly the bytes it came from (the uncompressed ones).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use tinycnn::data::{encode_idx, parse_idx};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        assert!(parse_idx(data).is_err(), "empty input accepted");
        return;
    };
    let raw = mode & 1 == 1;
    let input = if raw {
        rest.to_vec()
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).unwrap();
        gz.finish().unwrap()
    };
    let Ok(arr) = parse_idx(&input) else { return };
    let dims = arr.dims();
    assert!(
        (1..=3).contains(&dims.len()),
        "accepted {} dims",
        dims.len()
    );
    assert!(
        dims.iter().all(|&d| d > 0),
        "accepted a zero dimension: {dims:?}"
    );
    let count = dims.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
    assert_eq!(
        count,
        Some(arr.data().len()),
        "dims {dims:?} vs {} elements",
        arr.data().len()
    );
    let encoded = encode_idx(dims, arr.data()).expect("re-encoding an accepted array");
    if raw {
        // Raw input that is itself gzip (it starts 1f 8b) decodes to something else.
        if !input.starts_with(&[0x1f, 0x8b]) {
            assert!(
                encoded == input,
                "raw input does not round-trip (dims {dims:?})"
            );
        }
    } else {
        assert!(
            encoded == rest,
            "gzip payload does not round-trip (dims {dims:?})"
        );
    }
});
