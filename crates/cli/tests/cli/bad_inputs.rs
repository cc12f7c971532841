//! Bad arguments, files, pictures, thread counts, output paths and data directories: exit 1
//! with a message naming the problem, before any work.

use super::*;

#[test]
fn bad_inputs_exit_1_with_a_message() {
    let dir = temp_dir("bad");
    let missing = dir.join("missing.safetensors");
    assert_fails_with(
        &run(&["eval", "--weights", missing.to_str().unwrap()]),
        &["missing.safetensors"],
    );

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    assert_fails_with(
        &run(&["eval", "--weights", garbage.to_str().unwrap()]),
        &["garbage.safetensors", "safetensors"],
    );
    assert_fails_with(
        &run(&[
            "predict",
            "--weights",
            garbage.to_str().unwrap(),
            "--index",
            "0",
        ]),
        &["safetensors"],
    );

    // A weight file for another network: the key and both shapes are named.
    let wrong = dir.join("wrong.safetensors");
    write_zero_tensors(&wrong, &[("0.weight", &[6, 1, 3, 3]), ("0.bias", &[6])]);
    assert_fails_with(
        &run(&[
            "eval",
            "--weights",
            wrong.to_str().unwrap(),
            "--data",
            data_dir().to_str().unwrap(),
        ]),
        &["0.weight", "[6, 1, 3, 3]", "[6, 1, 5, 5]"],
    );
    assert_fails_with(
        &run(&[
            "export",
            "--weights",
            wrong.to_str().unwrap(),
            "--out",
            dir.join("x.safetensors").to_str().unwrap(),
        ]),
        &["0.weight"],
    );

    // Bad arguments.
    assert_fails_with(&run(&["train", "--epochs", "abc"]), &["--epochs"]);
    assert_fails_with(&run(&["train", "--model", "resnet"]), &["resnet"]);
    assert_fails_with(&run(&["summary", "--model", "alexnet"]), &["alexnet"]);
    assert_fails_with(&run(&["frobnicate"]), &["frobnicate"]);
    assert_fails_with(
        &run(&["predict", "--weights", "w.safetensors"]),
        &["--index"],
    );
    assert_fails_with(
        &run(&[
            "train",
            "--epochs",
            "0",
            "--data",
            data_dir().to_str().unwrap(),
        ]),
        &["--epochs"],
    );
    assert_fails_with(
        &run(&[
            "train",
            "--batch-size",
            "0",
            "--data",
            data_dir().to_str().unwrap(),
        ]),
        &["batch"],
    );
    assert_fails_with(
        &run(&["train", "--resume", missing.to_str().unwrap()]),
        &["missing.safetensors"],
    );

    // A checkpoint is required for --resume, not a plain weight file.
    let plain = dir.join("plain.safetensors");
    write_zero_tensors(&plain, &[("0.bias", &[6])]);
    assert_fails_with(
        &run(&["train", "--resume", plain.to_str().unwrap()]),
        &["checkpoint"],
    );

    // Not a PNG.
    let trained = temp_dir("bad-trained");
    assert_ok(&train(&trained, &["--epochs", "1"]));
    let w = trained.join("w.safetensors");
    assert_fails_with(
        &run(&[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            garbage.to_str().unwrap(),
        ]),
        &["PNG"],
    );
    // Index past the test set.
    assert_fails_with(
        &run(&[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            "--index",
            "256",
            "--data",
            data_dir().to_str().unwrap(),
        ]),
        &["256"],
    );
}

/// Writes a safetensors file of zero-filled F32 tensors without metadata.
fn write_zero_tensors(path: &Path, shapes: &[(&str, &[usize])]) {
    let tensors: Tensors = shapes
        .iter()
        .map(|(name, shape)| {
            let zeros = vec![0.0; shape.iter().product()];
            (name.to_string(), shape.to_vec(), zeros)
        })
        .collect();
    write_safetensors(path, &tensors, &[]);
}

/// The CRC-32 of PNG chunks (ISO 3309), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32(&body).to_be_bytes());
    c
}

/// A small PNG file whose header declares `w`x`h` 8-bit gray pixels (the pixel data is a
/// stub: a decoder that trusts the header allocates before it finds out).
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

#[test]
fn predict_checks_the_declared_picture_size_before_decoding() {
    let dir = temp_dir("huge-png");
    let w = trained_weights().join("w.safetensors");
    for (width, height) in [(20_000u32, 20_000u32), (16_385, 1), (6_000, 6_000)] {
        let png = dir.join(format!("claims-{width}x{height}.png"));
        std::fs::write(&png, png_declaring(width, height)).unwrap();
        let o = run(&[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            png.to_str().unwrap(),
        ]);
        assert_fails_with(
            &o,
            &[&format!("{width}x{height}"), "16384", "25 megapixels"],
        );
    }
    // A large picture within the limits is read (row by row) and classified.
    let png = dir.join("wide.png");
    image::GrayImage::from_fn(4_000, 1_000, |x, _| image::Luma([(x % 256) as u8]))
        .save(&png)
        .unwrap();
    let o = run(&[
        "predict",
        "--weights",
        w.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("4000x1000 -> 28x28"), "{}", stdout(&o));
    check_probabilities(&stdout(&o));
}

#[test]
fn thread_counts_are_bounded() {
    for n in ["100000000", "1025", "0"] {
        let o = run(&["eval", "--weights", "w.safetensors", "--threads", n]);
        assert_fails_with(&o, &["--threads", "between 1 and 1024", n]);
    }
}

/// Outputs that cannot be written, or that are one file under two names, are refused before
/// any training, and nothing is overwritten.
#[cfg(unix)]
#[test]
fn output_paths_are_checked_before_training() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = temp_dir("outputs");
    let out = dir.join("w.safetensors");
    std::fs::write(&out, b"keep me").unwrap();
    let dotted = dir.join(".").join("w.safetensors");
    let ckpt = dir.join("w.ckpt.safetensors");
    let link_to_ckpt = dir.join("curves.svg");
    symlink("w.ckpt.safetensors", &link_to_ckpt).unwrap();
    let nowhere = dir.join("no-such-dir/c.svg");
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let cases: [(Vec<&str>, &[&str]); 5] = [
        // --plot naming --out as ./w.safetensors.
        (
            vec!["--plot", dotted.to_str().unwrap()],
            &["--out", "--plot", "same file"],
        ),
        // --plot a symbolic link to the (not yet written) checkpoint.
        (
            vec!["--plot", link_to_ckpt.to_str().unwrap()],
            &["--checkpoint", "--plot", "same file"],
        ),
        (
            vec!["--checkpoint", out.to_str().unwrap()],
            &["--checkpoint", "same file"],
        ),
        (vec!["--plot", fifo.to_str().unwrap()], &["--plot", "FIFO"]),
        (
            vec!["--plot", nowhere.to_str().unwrap()],
            &["--plot", "no-such-dir", "does not exist"],
        ),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["--epochs", "1"];
        args.extend(extra);
        let o = train(&dir, &args);
        assert_fails_with(&o, needles);
        assert!(!stdout(&o).contains("epoch 1"), "{}", stdout(&o));
        assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
        assert!(!ckpt.exists());
    }
    // A --checkpoint in a read-only place fails before training too.
    let o = train(&dir, &["--checkpoint", "/proc/w.ckpt.safetensors"]);
    assert_fails_with(&o, &["--checkpoint", "/proc"]);

    // --out a symbolic link to a file of mode 0600: written through, the link and the mode
    // stay. The file name of the link's target is 255 bytes, the longest legal one.
    let long = "w".repeat(255);
    let target = dir.join(&long);
    std::fs::write(&target, b"stale weights").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("latest.safetensors");
    symlink(&long, &link).unwrap();
    let o = run(&[
        "train",
        "--data",
        data_dir().to_str().unwrap(),
        "--out",
        link.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--batch-size",
        "64",
        "--threads",
        "2",
        "--epochs",
        "1",
    ]);
    assert_ok(&o);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(header(&target).0, lenet_state_dict());
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No temporary file is left beside the outputs.
    let stray: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// An explicit --data that is missing or incomplete is an error naming what is missing; no
/// other copy is used and nothing is created or downloaded.
#[test]
fn an_explicit_data_directory_is_used_or_named_in_the_error() {
    let dir = temp_dir("data-explicit");
    let typo = dir.join("fashon-mnist");
    let o = run(&[
        "eval",
        "--weights",
        trained_weights().join("w.safetensors").to_str().unwrap(),
        "--data",
        typo.to_str().unwrap(),
    ]);
    assert_fails_with(&o, &[&format!("{} does not exist", typo.display())]);
    assert!(!typo.exists());
    // Three of the four files.
    let partial = dir.join("partial");
    std::fs::create_dir(&partial).unwrap();
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
    ] {
        std::fs::copy(data_dir().join(f), partial.join(f)).unwrap();
    }
    let o = run(&[
        "train",
        "--data",
        partial.to_str().unwrap(),
        "--out",
        dir.join("w.safetensors").to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["lacks 1 of the 4 files", "t10k-labels-idx1-ubyte.gz"]);
    // $TINYCNN_DATA set: likewise used as given.
    let o = bin()
        .env("TINYCNN_DATA", &typo)
        .args([
            "predict",
            "--weights",
            trained_weights().join("w.safetensors").to_str().unwrap(),
            "--index",
            "0",
        ])
        .output()
        .unwrap();
    assert_fails_with(&o, &["does not exist", "$TINYCNN_DATA"]);
    assert!(!typo.exists());
}
