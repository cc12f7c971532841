//! The no_std safetensors reader: valid files load, every kind of malformed blob is an error
//! (never a panic), and random corruption of a real file never panics.

use tinycnn_mcu::host::{aligned_copy, safetensors_bytes, TensorOut};
use tinycnn_mcu::{Error, Safetensors};

/// A file from a hand-written header and data region (header padded to 8 bytes).
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while (8 + h.len()) % 8 != 0 {
        h.push(' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn parse(bytes: &[u8]) -> Result<(), Error> {
    let a = aligned_copy(bytes);
    Safetensors::parse(a.bytes()).map(|_| ())
}

#[test]
fn reads_a_hand_written_file() {
    // 2 f32 (1.0, -2.5) then 3 i8 (1, -1, 127); metadata first, keys in any order.
    let mut data = Vec::new();
    data.extend_from_slice(&1.0f32.to_le_bytes());
    data.extend_from_slice(&(-2.5f32).to_le_bytes());
    data.extend_from_slice(&[1u8, 0xff, 127]);
    let bytes = file(
        r#"{"__metadata__":{"format":"pt"},"b":{"shape":[3],"dtype":"I8","data_offsets":[8,11]},
            "a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#,
        &data,
    );
    let al = aligned_copy(&bytes);
    let st = Safetensors::parse(al.bytes()).unwrap();
    assert_eq!(st.metadata("format"), Some("pt"));
    assert_eq!(st.tensors().len(), 2);
    assert_eq!(st.f32("a", &[1, 2]).unwrap(), &[1.0, -2.5]);
    assert_eq!(st.i8("b", &[3]).unwrap(), &[1, -1, 127]);
    assert_eq!(
        st.f32("a", &[2]),
        Err(Error::Shape {
            name: "a",
            dim: usize::MAX,
            expected: 1,
            found: 2
        })
    );
    assert_eq!(
        st.f32("a", &[1, 3]),
        Err(Error::Shape {
            name: "a",
            dim: 1,
            expected: 3,
            found: 2
        })
    );
    assert_eq!(
        st.i32("b", &[3]),
        Err(Error::Dtype {
            name: "b",
            expected: "I32",
            found: "I8"
        })
    );
    assert_eq!(st.f32("c", &[1]), Err(Error::MissingTensor { name: "c" }));
    // An empty object is a valid (empty) file; so is a scalar of shape [].
    assert!(parse(&file("{}", &[])).is_ok());
    let one = 3.0f32.to_le_bytes();
    assert!(parse(&file(
        r#"{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#,
        &one
    ))
    .is_ok());
}

#[test]
fn misaligned_f32_data_is_an_error_not_ub() {
    // Header of 8 + 7 bytes... forced odd: an I8 of 1 byte first, then an F32 at offset 1.
    let mut data = vec![5u8];
    data.extend_from_slice(&1.0f32.to_le_bytes());
    let bytes = file(
        r#"{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}}"#,
        &data,
    );
    let al = aligned_copy(&bytes);
    let st = Safetensors::parse(al.bytes()).unwrap();
    assert_eq!(st.f32("b", &[1]), Err(Error::Misaligned { name: "b" }));
}

#[test]
fn malformed_files_are_errors() {
    let f4 = [0u8; 4];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short length", vec![1, 0, 0]),
        ("length past end", {
            let mut v = 100u64.to_le_bytes().to_vec();
            v.extend_from_slice(b"{}");
            v
        }),
        ("huge length", u64::MAX.to_le_bytes().to_vec()),
        (
            "not utf8",
            file("{\"\u{1}\"}", &[])
                .into_iter()
                .map(|b| if b == 1 { 0xff } else { b })
                .collect(),
        ),
        ("not an object", file("[]", &[])),
        ("trailing garbage", file("{} x", &[])),
        ("unterminated", file("{\"a\":{\"dtype\":\"F32\"", &[])),
        (
            "unknown dtype",
            file(
                r#"{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "missing offsets",
            file(r#"{"a":{"dtype":"F32","shape":[1]}}"#, &f4),
        ),
        (
            "extra key",
            file(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#,
                &f4,
            ),
        ),
        (
            "duplicate key",
            file(
                r#"{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "span != size",
            file(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "offsets reversed",
            file(
                r#"{"a":{"dtype":"I8","shape":[0],"data_offsets":[4,0]}}"#,
                &f4,
            ),
        ),
        (
            "past data end",
            file(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                &f4,
            ),
        ),
        (
            "negative dim",
            file(
                r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "float dim",
            file(
                r#"{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "leading zero",
            file(
                r#"{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "dim overflow",
            file(
                r#"{"a":{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "size overflow",
            file(
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "rank 5",
            file(
                r#"{"a":{"dtype":"F32","shape":[1,1,1,1,1],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "duplicate name",
            file(
                r#"{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"I8","shape":[2],"data_offsets":[2,4]}}"#,
                &f4,
            ),
        ),
        (
            "overlap",
            file(
                r#"{"a":{"dtype":"I8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"I8","shape":[2],"data_offsets":[2,4]}}"#,
                &f4,
            ),
        ),
        (
            "gap",
            file(
                r#"{"a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"I8","shape":[2],"data_offsets":[2,4]}}"#,
                &f4,
            ),
        ),
        (
            "bytes after last tensor",
            file(
                r#"{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}"#,
                &f4,
            ),
        ),
        (
            "bad escape",
            file(
                r#"{"a\q":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}"#,
                &f4,
            ),
        ),
        (
            "metadata not strings",
            file(r#"{"__metadata__":{"a":1}}"#, &[]),
        ),
    ];
    for (what, bytes) in cases {
        assert!(parse(&bytes).is_err(), "{what} was accepted");
    }
}

/// Flipping, truncating and splicing bytes of a real LeNet file never panics.
#[test]
fn corrupted_files_never_panic() {
    let w: Vec<f32> = (0..150).map(|i| i as f32 / 7.0).collect();
    let good = safetensors_bytes(
        &[
            TensorOut::f32("0.weight", &[6, 1, 5, 5], &w),
            TensorOut::f32("0.bias", &[6], &w[..6]),
        ],
        &[("model", "lenet")],
    );
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for i in 0..3000 {
        let mut b = good.clone();
        match i % 3 {
            0 => {
                // Mutate 1-4 bytes of the length field or the header, where structure lives.
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % (8 + header_len);
                    b[at] = next() as u8;
                }
            }
            1 => b.truncate((next() as usize) % good.len()),
            _ => {
                let at = 8 + (next() as usize) % header_len;
                b.insert(at, b"{}[],:\"0 -"[(next() % 10) as usize]);
            }
        }
        let al = aligned_copy(&b);
        let loaded = Safetensors::parse(al.bytes()).and_then(|st| {
            st.f32("0.weight", &[6, 1, 5, 5])?;
            st.f32("0.bias", &[6]).map(|_| ())
        });
        accepted += loaded.is_ok() as usize;
    }
    // Some mutations only touch padding spaces or digits of equal meaning; most must fail.
    assert!(accepted < 1500, "{accepted} corrupted files loaded");
}
