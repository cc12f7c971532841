//! Weight and checkpoint files edited after training (non-finite values, metadata, missing
//! optimizer state, many keys): refused with an error naming the file and the problem.

use super::*;

/// The tensors and metadata of a safetensors file, as [`read_safetensors`] gives them.
type Contents = (Tensors, HashMap<String, String>);

fn write_contents(path: &Path, (tensors, meta): &Contents) {
    write_safetensors_map(path, tensors, meta);
}

/// Copies a safetensors file through `edit`.
fn edit_file(src: &Path, dst: &Path, edit: impl FnOnce(&mut Contents)) {
    let mut c = read_safetensors(src);
    edit(&mut c);
    write_contents(dst, &c);
}

fn set_value(c: &mut Contents, name: &str, index: usize, v: f32) {
    let t = c.0.iter_mut().find(|t| t.0 == name).unwrap();
    t.2[index] = v;
}

fn set_meta(c: &mut Contents, key: &str, v: &str) {
    c.1.insert(key.into(), v.into());
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let dir = temp_dir("nan-weights");
    let w = trained_weights().join("w.safetensors");
    let ck = trained_weights().join("w.ckpt.safetensors");
    let nan = dir.join("nan.safetensors");
    edit_file(&w, &nan, |c| set_value(c, "0.weight", 17, f32::NAN));
    let o = run(&[
        "eval",
        "--weights",
        nan.to_str().unwrap(),
        "--data",
        data_dir().to_str().unwrap(),
    ]);
    assert_fails_with(
        &o,
        &["nan.safetensors", "weight 0.weight holds NaN at index 17"],
    );
    let o = run(&[
        "predict",
        "--weights",
        nan.to_str().unwrap(),
        "--index",
        "0",
    ]);
    assert_fails_with(&o, &["weight 0.weight holds NaN at index 17"]);

    let inf = dir.join("inf.ckpt.safetensors");
    edit_file(&ck, &inf, |c| set_value(c, "3.bias", 2, f32::INFINITY));
    let o = train(&dir, &["--epochs", "2", "--resume", inf.to_str().unwrap()]);
    assert_fails_with(&o, &["inf.ckpt.safetensors", "3.bias holds inf at index 2"]);
    assert!(!stdout(&o).contains("epoch 2"), "{}", stdout(&o));
}

/// A resumed run that diverges names the checkpoint it read (the one that still holds good
/// weights), not the --checkpoint it has not written yet.
#[test]
fn a_diverging_resume_names_the_file_it_read() {
    let dir = temp_dir("resume-diverge");
    assert_ok(&train(&dir, &["--epochs", "1", "--model", "lenet-relu"]));
    let read = dir.join("hot.ckpt.safetensors");
    edit_file(&dir.join("w.ckpt.safetensors"), &read, |c| {
        set_meta(c, "lr", "1e30")
    });
    let other = dir.join("other.ckpt.safetensors");
    let o = train(
        &dir,
        &[
            "--epochs",
            "3",
            "--resume",
            read.to_str().unwrap(),
            "--checkpoint",
            other.to_str().unwrap(),
        ],
    );
    assert_fails_with(
        &o,
        &[
            "epoch 2",
            "diverged",
            &format!("{} holds epoch 1", read.display()),
        ],
    );
    assert!(!other.exists());
}

#[test]
fn checkpoint_values_are_reported_as_the_files_not_as_flags() {
    let dir = temp_dir("ck-values");
    let ck = trained_weights().join("w.ckpt.safetensors");
    for (key, value, needle) in [
        ("batch_size", "0", "batch_size is 0"),
        ("lr", "-0.5", "lr = -0.5"),
        ("lr", "NaN", "lr = NaN is not a positive number"),
    ] {
        let bad = dir.join(format!("bad-{key}.ckpt.safetensors"));
        edit_file(&ck, &bad, |c| set_meta(c, key, value));
        let o = train(&dir, &["--epochs", "2", "--resume", bad.to_str().unwrap()]);
        assert_fails_with(&o, &[bad.to_str().unwrap(), needle]);
        let err = stderr(&o);
        assert!(
            !err.contains("--batch-size") && !err.contains("--lr"),
            "{err}"
        );
    }
}

#[test]
fn optimizer_state_must_match_the_optimizer_named() {
    let dir = temp_dir("ck-optim");
    assert_ok(&train(
        &dir,
        &["--epochs", "1", "--optimizer", "adam", "--lr", "0.001"],
    ));
    let adam = dir.join("w.ckpt.safetensors");
    // Adam without its moments.
    let bare = dir.join("bare.ckpt.safetensors");
    edit_file(&adam, &bare, |c| {
        c.0.retain(|t| !t.0.starts_with("optimizer."))
    });
    let o = train(&dir, &["--epochs", "2", "--resume", bare.to_str().unwrap()]);
    assert_fails_with(
        &o,
        &[
            "bare.ckpt.safetensors",
            "adam",
            "optimizer.state.0.step",
            "missing",
        ],
    );
    // Only some parameters' moments.
    let partial = dir.join("partial.ckpt.safetensors");
    edit_file(&adam, &partial, |c| {
        c.0.retain(|t| !t.0.starts_with("optimizer.state.4."))
    });
    let o = train(
        &dir,
        &["--epochs", "2", "--resume", partial.to_str().unwrap()],
    );
    assert_fails_with(&o, &["optimizer.state.4.exp_avg", "missing"]);
    // Adam's state relabelled sgd.
    let as_sgd = dir.join("as-sgd.ckpt.safetensors");
    edit_file(&adam, &as_sgd, |c| set_meta(c, "optimizer", "sgd"));
    let o = train(
        &dir,
        &["--epochs", "2", "--resume", as_sgd.to_str().unwrap()],
    );
    assert_fails_with(&o, &["as-sgd.ckpt.safetensors", "sgd", "Adam state"]);

    // An SGD checkpoint relabelled adam.
    let sgd_dir = temp_dir("ck-optim-sgd");
    assert_ok(&train(&sgd_dir, &["--epochs", "1"]));
    let as_adam = sgd_dir.join("as-adam.ckpt.safetensors");
    edit_file(&sgd_dir.join("w.ckpt.safetensors"), &as_adam, |c| {
        set_meta(c, "optimizer", "adam");
        set_meta(c, "lr", "0.001");
    });
    let o = train(
        &sgd_dir,
        &["--epochs", "2", "--resume", as_adam.to_str().unwrap()],
    );
    assert_fails_with(&o, &["as-adam.ckpt.safetensors", "adam", "missing"]);
    assert!(!stdout(&o).contains("epoch 2"), "{}", stdout(&o));
}

#[test]
fn an_error_about_a_file_with_100000_keys_stays_one_short_line() {
    let dir = temp_dir("many-keys");
    let many = dir.join("many.safetensors");
    let mut c = read_safetensors(&trained_weights().join("w.safetensors"));
    c.1.clear();
    c.0.extend((0..100_000).map(|i| (format!("extra.{i}"), vec![1], vec![0.0])));
    write_contents(&many, &c);
    let o = run(&[
        "eval",
        "--weights",
        many.to_str().unwrap(),
        "--data",
        data_dir().to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["is not a parameter of the model", "and 99,997 more"]);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.len() < 400, "{} bytes: {err}", err.len());
    // The same file without a parameter: the missing key, and a short list of what is there.
    c.0.retain(|t| t.0 != "0.weight");
    write_contents(&many, &c);
    let o = run(&[
        "export",
        "--weights",
        many.to_str().unwrap(),
        "--out",
        dir.join("x").to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["0.weight", "is missing", "100,009 keys"]);
    assert!(stderr(&o).len() < 400, "{}", stderr(&o));
}
