//! The process around training: a closed stdout, Ctrl-C, and mpirun's environment.

use super::*;

/// Waits for a child up to a minute (a hung child fails the test instead of hanging it).
fn wait_for(child: &mut std::process::Child) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the child did not exit within a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `train` on one thread into `out` with its stdout and stderr piped, not waited for.
fn spawn_train(out: &Path, batch_size: &str, epochs: &str) -> std::process::Child {
    bin()
        .args([
            "train",
            "--data",
            data_dir().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch-size",
            batch_size,
            "--threads",
            "1",
            "--epochs",
            epochs,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `tinycnn train | head -2`: the reader goes away after the two header lines, so the
/// first epoch's line meets a closed pipe. The run ends quietly with 141, and that epoch's
/// checkpoint was written before its line.
#[test]
fn a_closed_stdout_ends_training_quietly_with_the_epoch_saved() {
    use std::io::BufRead;
    let dir = temp_dir("epipe");
    let out = dir.join("w.safetensors");
    let mut child = spawn_train(&out, "1", "3");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let l = lines.next().unwrap().unwrap();
        assert!(!l.starts_with("epoch"), "{l}");
    }
    drop(lines);
    let status = wait_for(&mut child);
    let err = read_to_string(child.stderr.take().unwrap());
    assert_eq!(status.code(), Some(141), "stderr: {err}");
    assert_eq!(err, "");
    let (_, meta) = header(&dir.join("w.ckpt.safetensors"));
    assert_eq!(meta["epochs_done"], "1");
    assert_eq!(header(&out).0, lenet_state_dict());
}

/// Ctrl-C (SIGINT) during training stops at a safe point: exit 130, a stderr line naming the
/// checkpoint and the epoch it holds (which the file confirms), no temporary files left.
#[cfg(unix)]
#[test]
fn sigint_stops_training_and_says_which_epoch_is_saved() {
    use std::io::BufRead;
    let dir = temp_dir("sigint");
    let out = dir.join("w.safetensors");
    let ckpt = dir.join("w.ckpt.safetensors");
    let mut child = spawn_train(&out, "64", "100000");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let l = lines.next().expect("output until epoch 2").unwrap();
        if l.starts_with("epoch 2:") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    // Keep draining stdout so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.count());
    let status = wait_for(&mut child);
    drain.join().unwrap();
    let err = read_to_string(child.stderr.take().unwrap());
    assert_eq!(status.code(), Some(130), "stderr: {err}");
    let (_, meta) = header(&ckpt);
    let done: usize = meta["epochs_done"].parse().unwrap();
    assert!(done >= 2, "{done}");
    assert_eq!(
        err.trim_end(),
        format!("interrupted: {} holds epoch {done}", ckpt.display())
    );
    let stray: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // The saved run resumes.
    let o = train(
        &dir,
        &[
            "--epochs",
            &(done + 1).to_string(),
            "--resume",
            ckpt.to_str().unwrap(),
        ],
    );
    assert_ok(&o);
    assert!(
        stdout(&o).contains(&format!("epoch {}:", done + 1)),
        "{}",
        stdout(&o)
    );
}

/// Under mpirun a binary built without MPI must not train N times alone (each rank writing
/// the same files): it stops and says how to build it or to opt out.
#[cfg(not(feature = "mpi"))]
#[test]
fn train_under_mpirun_without_mpi_support_is_an_error() {
    let dir = temp_dir("no-mpi");
    let out = dir.join("w.safetensors");
    let o = bin()
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .args(["train", "--data", data_dir().to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--epochs", "1"])
        .output()
        .unwrap();
    assert_fails_with(
        &o,
        &[
            "started by mpirun with 2 processes",
            "--features mpi",
            "--distributed none",
        ],
    );
    assert!(!out.exists());
    let o = run(&["train", "--distributed", "mpi", "--epochs", "1"]);
    assert_fails_with(&o, &["built without MPI"]);
}

/// `--distributed none` trains alone whatever the environment says.
#[test]
fn distributed_none_ignores_the_mpi_environment() {
    let dir = temp_dir("dist-none");
    let out = dir.join("w.safetensors");
    let o = bin()
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .args(["train", "--data", data_dir().to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--epochs", "1"])
        .args([
            "--batch-size",
            "64",
            "--threads",
            "2",
            "--distributed",
            "none",
        ])
        .output()
        .unwrap();
    assert_ok(&o);
    assert!(stdout(&o).contains("training on cpu\n"), "{}", stdout(&o));
    assert!(out.exists());
}
