//! `tinycnn::io::write_atomic`, the one atomic file writer of the workspace: it writes
//! through symbolic links, refuses targets that are not regular files, keeps the file's mode,
//! uses a temporary name that fits the file-name limit, and cleans up after killed runs.

#![cfg(unix)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use tinycnn::io::{check_writable, resolve_output, same_output, write_atomic, TEMP_PREFIX};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinycnn-io-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_symlink_is_written_through_and_stays_a_link() {
    let dir = temp_dir("link");
    let target = dir.join("weights-v1.bin");
    std::fs::write(&target, b"stale").unwrap();
    let link = dir.join("latest.bin");
    symlink("weights-v1.bin", &link).unwrap();
    write_atomic(&link, b"fresh").unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("weights-v1.bin")
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"fresh");
    // A chain of links and a dangling link (its target is created).
    let link2 = dir.join("chain.bin");
    symlink(&link, &link2).unwrap();
    write_atomic(&link2, b"third").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"third");
    let dangling = dir.join("dangling.bin");
    symlink("sub-target.bin", &dangling).unwrap();
    write_atomic(&dangling, b"new").unwrap();
    assert_eq!(std::fs::read(dir.join("sub-target.bin")).unwrap(), b"new");
    assert_eq!(
        names(&dir),
        [
            "chain.bin",
            "dangling.bin",
            "latest.bin",
            "sub-target.bin",
            "weights-v1.bin"
        ]
    );
    // A loop is an error, not a hang.
    symlink("loop-b", dir.join("loop-a")).unwrap();
    symlink("loop-a", dir.join("loop-b")).unwrap();
    let e = write_atomic(&dir.join("loop-a"), b"x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("symbolic links"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn targets_that_are_not_regular_files_are_refused_and_left_alone() {
    let dir = temp_dir("special");
    // A device node, reached through a link so that a broken writer replaces only the link.
    let dev = dir.join("null-link");
    symlink("/dev/null", &dev).unwrap();
    let e = write_atomic(&dev, b"x").unwrap_err().to_string();
    assert!(
        e.contains("/dev/null") && e.contains("character device"),
        "{e}"
    );
    assert_eq!(std::fs::read_link(&dev).unwrap(), Path::new("/dev/null"));

    let fifo = dir.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let e = write_atomic(&fifo, b"x").unwrap_err().to_string();
    assert!(e.contains("FIFO") && e.contains("refusing"), "{e}");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::symlink_metadata(&fifo).unwrap().file_type()
    ));

    let sub = dir.join("subdir");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("keep"), b"k").unwrap();
    let e = write_atomic(&sub, b"x").unwrap_err().to_string();
    assert!(e.contains("directory"), "{e}");
    assert_eq!(std::fs::read(sub.join("keep")).unwrap(), b"k");

    let sock_path = dir.join("sock");
    let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let e = write_atomic(&sock_path, b"x").unwrap_err().to_string();
    assert!(e.contains("socket"), "{e}");
    assert!(check_writable(&fifo).is_err());
    // Nothing but the originals is left.
    assert_eq!(names(&dir), ["fifo", "null-link", "sock", "subdir"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_file_mode_is_kept() {
    let dir = temp_dir("mode");
    for mode in [0o600u32, 0o640, 0o755] {
        let p = dir.join(format!("m{mode:o}"));
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        write_atomic(&p, b"new").unwrap();
        let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, mode, "{}", p.display());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_target_name_of_255_bytes_can_be_written() {
    let dir = temp_dir("long");
    let name = "w".repeat(255);
    let p = dir.join(&name);
    write_atomic(&p, b"one").unwrap();
    write_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert_eq!(names(&dir), [name]);
    let e = check_writable(&dir.join("w".repeat(256)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("256 bytes"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stale_temporaries_of_dead_runs_are_removed_and_live_ones_kept() {
    let dir = temp_dir("stale");
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let stale = dir.join(format!("{TEMP_PREFIX}{dead_pid}-3"));
    let running = dir.join(format!("{TEMP_PREFIX}{}-0", live.id()));
    let other = dir.join(format!("{TEMP_PREFIX}notes"));
    for p in [&stale, &running, &other] {
        std::fs::write(p, b"half a file").unwrap();
    }
    write_atomic(&dir.join("w.bin"), b"ok").unwrap();
    let _ = live.kill();
    let _ = live.wait();
    let left = names(&dir);
    assert!(!left.contains(&stale.file_name().unwrap().to_string_lossy().into_owned()));
    assert!(left.contains(&running.file_name().unwrap().to_string_lossy().into_owned()));
    assert!(left.contains(&other.file_name().unwrap().to_string_lossy().into_owned()));
    assert!(left.contains(&"w.bin".to_string()));
    assert_eq!(left.len(), 3, "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spellings_of_one_file_are_recognised() {
    let dir = temp_dir("same");
    let a = dir.join("a.bin");
    std::fs::write(&a, b"a").unwrap();
    // `dir/./a.bin` and `dir/sub/../a.bin` are a.bin.
    std::fs::create_dir(dir.join("sub")).unwrap();
    assert!(same_output(&a, &dir.join(".").join("a.bin")).unwrap());
    assert!(same_output(&a, &dir.join("sub").join("..").join("a.bin")).unwrap());
    // A link, also to a file that does not exist yet.
    symlink("a.bin", dir.join("link-a")).unwrap();
    assert!(same_output(&a, &dir.join("link-a")).unwrap());
    symlink("later.bin", dir.join("link-later")).unwrap();
    assert!(same_output(&dir.join("later.bin"), &dir.join("link-later")).unwrap());
    // A hard link.
    std::fs::hard_link(&a, dir.join("hard-a")).unwrap();
    assert!(same_output(&a, &dir.join("hard-a")).unwrap());
    assert!(!same_output(&a, &dir.join("b.bin")).unwrap());
    assert_eq!(
        resolve_output(&dir.join("link-a")).unwrap(),
        std::fs::canonicalize(&a).unwrap()
    );
    // A missing directory is named.
    let e = check_writable(&dir.join("nope").join("x.bin"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist") && e.contains("nope"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
