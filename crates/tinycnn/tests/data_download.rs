//! Finding and downloading data sets, against a small HTTP server on 127.0.0.1 started by each
//! test. No other address is ever contacted.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use md5::{Digest, Md5};
use tinycnn::data::{
    download_file, encode_idx, load_dataset, DataError, DatasetSpec, DownloadEvent,
    DownloadOptions, FileSpec, LoadOptions,
};

const NAMES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];
const TRAIN_LABELS: [u8; 5] = [9, 0, 3, 1, 7];
const TEST_LABELS: [u8; 3] = [2, 5, 8];

/// Pixel `p` of image `i` in a split: a pattern that makes every image distinct.
fn pixel(i: usize, p: usize) -> u8 {
    ((i * 31 + p * 7) % 256) as u8
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn images_idx(count: usize) -> Vec<u8> {
    let pixels: Vec<u8> = (0..count)
        .flat_map(|i| (0..784).map(move |p| pixel(i, p)))
        .collect();
    encode_idx(&[count, 28, 28], &pixels).unwrap()
}

/// The four raw IDX files, in `NAMES` order.
fn raw_files() -> [Vec<u8>; 4] {
    [
        images_idx(5),
        encode_idx(&[5], &TRAIN_LABELS).unwrap(),
        images_idx(3),
        encode_idx(&[3], &TEST_LABELS).unwrap(),
    ]
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn spec_for(files: &[Vec<u8>; 4]) -> DatasetSpec {
    let spec = |i: usize| FileSpec {
        name: NAMES[i].to_string(),
        md5: md5_hex(&files[i]),
    };
    DatasetSpec {
        name: "Tiny-MNIST".to_string(),
        dir_name: "tiny-mnist".to_string(),
        dir_env: None,
        url_env: None,
        default_url: "http://127.0.0.1:9/unused/".to_string(),
        train_images: spec(0),
        train_labels: spec(1),
        test_images: spec(2),
        test_labels: spec(3),
        class_names: (0..10).map(|i| format!("class {i}")).collect(),
    }
}

enum Reply {
    Ok(Vec<u8>),
    /// Announces `claimed` bytes, sends `body`, closes the connection.
    Truncated {
        body: Vec<u8>,
        claimed: usize,
    },
    /// Accepts the request and never answers.
    Stall,
}

struct Server {
    base_url: String,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `routes` (path without leading slash -> reply); anything else is a 404.
    /// The thread exits on drop or after 30 s, whichever is first.
    fn start(routes: HashMap<String, Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!("http://{}/files/", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (requests2, stop2) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut stalled = Vec::new();
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        requests2.fetch_add(1, Ordering::SeqCst);
                        if let Some(held) = handle(stream, &routes) {
                            stalled.push(held);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            base_url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request; returns the stream when it must be held open unanswered.
fn handle(mut stream: TcpStream, routes: &HashMap<String, Reply>) -> Option<TcpStream> {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .trim_start_matches("/files/")
        .to_string();
    let (status, body, claimed) = match routes.get(&path) {
        Some(Reply::Ok(body)) => ("200 OK", body.as_slice(), body.len()),
        Some(Reply::Truncated { body, claimed }) => ("200 OK", body.as_slice(), *claimed),
        Some(Reply::Stall) => return Some(stream),
        None => ("404 Not Found", &b"not found"[..], 9),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {claimed}\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    None
}

fn routes_for(gz: &[Vec<u8>; 4]) -> HashMap<String, Reply> {
    NAMES
        .iter()
        .zip(gz)
        .map(|(n, b)| (n.to_string(), Reply::Ok(b.clone())))
        .collect()
}

/// A fresh empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tinycnn-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn options<'a>(dir: &Path, server: &Server) -> LoadOptions<'a> {
    LoadOptions {
        dir: Some(dir.to_path_buf()),
        search_defaults: false,
        download: true,
        base_url: Some(server.base_url.clone()),
        download_options: DownloadOptions {
            timeout: Duration::from_secs(5),
            progress: None,
        },
    }
}

#[test]
fn downloads_verifies_and_loads() {
    let gz = raw_files().map(|f| gzip(&f));
    let spec = spec_for(&gz);
    let server = Server::start(routes_for(&gz));
    let tmp = TempDir::new("ok");
    let dir = tmp.0.join("nested").join("tiny");

    let mut events = Vec::new();
    let mut record = |e: &DownloadEvent| events.push(e.clone());
    let mut opts = options(&dir, &server);
    opts.download_options.progress = Some(&mut record);
    let data = load_dataset(&spec, opts).unwrap();

    assert_eq!(server.requests(), 4);
    assert_eq!(data.dir, dir);
    assert_eq!(data.train.len(), 5);
    assert_eq!(data.test.len(), 3);
    assert_eq!((data.train.rows, data.train.cols), (28, 28));
    assert_eq!(&*data.train.labels, &TRAIN_LABELS);
    assert_eq!(&*data.test.labels, &TEST_LABELS);
    assert_eq!(data.class_name(9), Some("class 9"));
    // Image 3, pixel 100 of the training split: (3*31 + 100*7) % 256 = 793 % 256 = 25.
    assert_eq!(data.train.image(3).unwrap()[100], 25.0 / 255.0);
    assert_eq!(data.test.image(2).unwrap()[0], 62.0 / 255.0);
    assert_eq!(data.train.images.len(), 5 * 784);
    assert!(data.train.image(5).is_none());
    assert!(data.train.image(usize::MAX).is_none());

    // Stored files are the served bytes, and nothing else (no temporary files) is left.
    assert_eq!(entries(&dir), {
        let mut n: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        n.sort();
        n
    });
    for (name, bytes) in NAMES.iter().zip(&gz) {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes);
    }

    let starts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, DownloadEvent::Started { .. }))
        .collect();
    assert_eq!(starts.len(), 4);
    assert!(
        matches!(starts[0], DownloadEvent::Started { index: 0, count: 4, total: Some(t), .. } if *t == gz[0].len() as u64)
    );
    let finished = events
        .iter()
        .filter(|e| matches!(e, DownloadEvent::Finished { .. }))
        .count();
    assert_eq!(finished, 4);
    let last_progress = events.iter().rev().find_map(|e| match e {
        DownloadEvent::Progress { file, done, .. } if file == NAMES[3] => Some(*done),
        _ => None,
    });
    assert_eq!(last_progress, Some(gz[3].len() as u64));

    // A second load finds the files and asks the server nothing.
    let again = load_dataset(&spec, options(&dir, &server)).unwrap();
    assert_eq!(again, data);
    assert_eq!(server.requests(), 4);
}

#[test]
fn downloads_only_missing_files() {
    let raw = raw_files();
    let gz = raw.clone().map(|f| gzip(&f));
    let spec = spec_for(&gz);
    let server = Server::start(routes_for(&gz));
    let tmp = TempDir::new("partial");
    // Training images present uncompressed under the name without ".gz".
    std::fs::write(tmp.0.join("train-images-idx3-ubyte"), &raw[0]).unwrap();
    let data = load_dataset(&spec, options(&tmp.0, &server)).unwrap();
    assert_eq!(server.requests(), 3);
    assert_eq!(data.train.len(), 5);
    assert_eq!(data.train.image(0).unwrap()[1], 7.0 / 255.0);
}

#[test]
fn checksum_mismatch_keeps_no_file() {
    let gz = raw_files().map(|f| gzip(&f));
    let spec = spec_for(&gz);
    let mut routes = routes_for(&gz);
    let mut corrupted = gz[1].clone();
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0x40;
    routes.insert(NAMES[1].to_string(), Reply::Ok(corrupted.clone()));
    let server = Server::start(routes);
    let tmp = TempDir::new("md5");

    let err = load_dataset(&spec, options(&tmp.0, &server)).unwrap_err();
    match &err {
        DataError::ChecksumMismatch {
            url,
            expected,
            actual,
        } => {
            assert!(url.ends_with(NAMES[1]), "{url}");
            assert_eq!(expected, &md5_hex(&gz[1]));
            assert_eq!(actual, &md5_hex(&corrupted));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("MD5 mismatch"));
    // The first file had completed and stays; the corrupted one left nothing behind.
    assert_eq!(entries(&tmp.0), [NAMES[0]]);
}

#[test]
fn truncated_body_is_an_error_and_keeps_no_file() {
    let gz = raw_files().map(|f| gzip(&f));
    let spec = spec_for(&gz);
    let mut routes = routes_for(&gz);
    routes.insert(
        NAMES[0].to_string(),
        Reply::Truncated {
            body: gz[0].clone(),
            claimed: gz[0].len() + 100,
        },
    );
    let server = Server::start(routes);
    let tmp = TempDir::new("trunc");

    let err = load_dataset(&spec, options(&tmp.0, &server)).unwrap_err();
    match &err {
        DataError::Download { url, reason } => {
            assert!(url.ends_with(NAMES[0]), "{url}");
            assert!(
                reason.contains("truncated") || reason.contains("closed"),
                "{reason}"
            );
        }
        other => panic!("expected a download error, got {other:?}"),
    }
    assert!(entries(&tmp.0).is_empty(), "{:?}", entries(&tmp.0));
}

#[test]
fn http_404_is_an_error() {
    let gz = raw_files().map(|f| gzip(&f));
    let spec = spec_for(&gz);
    let mut routes = routes_for(&gz);
    routes.remove(NAMES[2]);
    let server = Server::start(routes);
    let tmp = TempDir::new("404");

    let err = load_dataset(&spec, options(&tmp.0, &server)).unwrap_err();
    match &err {
        DataError::Download { url, reason } => {
            assert!(url.ends_with(NAMES[2]), "{url}");
            assert!(reason.contains("404"), "{reason}");
        }
        other => panic!("expected a download error, got {other:?}"),
    }
    assert_eq!(entries(&tmp.0), [NAMES[0], NAMES[1]]);
}

#[test]
fn stalled_server_times_out() {
    let mut routes = HashMap::new();
    routes.insert("slow.gz".to_string(), Reply::Stall);
    let server = Server::start(routes);
    let tmp = TempDir::new("stall");
    let mut opts = DownloadOptions {
        timeout: Duration::from_millis(500),
        progress: None,
    };
    let started = Instant::now();
    let url = format!("{}slow.gz", server.base_url);
    let err =
        download_file(&url, &tmp.0.join("slow.gz"), &md5_hex(b""), 0, 1, &mut opts).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, DataError::Download { .. }), "{err:?}");
    assert!(entries(&tmp.0).is_empty());
}

#[test]
fn not_found_without_download() {
    let tmp = TempDir::new("nodl");
    let spec = spec_for(&raw_files());
    let opts = LoadOptions {
        dir: Some(tmp.0.clone()),
        search_defaults: false,
        download: false,
        ..LoadOptions::default()
    };
    let err = load_dataset(&spec, opts).unwrap_err();
    match &err {
        DataError::NotFound { searched, .. } => assert_eq!(searched, std::slice::from_ref(&tmp.0)),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(err.to_string().contains("downloading is disabled"));
}

fn write_all(dir: &Path, files: &[Vec<u8>; 4]) {
    for (name, bytes) in NAMES.iter().zip(files) {
        std::fs::write(dir.join(name), gzip(bytes)).unwrap();
    }
}

fn local_options(dir: &Path) -> LoadOptions<'static> {
    LoadOptions {
        dir: Some(dir.to_path_buf()),
        search_defaults: false,
        download: false,
        ..LoadOptions::default()
    }
}

#[test]
fn inconsistent_local_files_are_rejected() {
    let spec = spec_for(&raw_files());
    let tmp = TempDir::new("bad");

    let mut files = raw_files();
    files[1] = encode_idx(&[4], &TRAIN_LABELS[..4]).unwrap();
    write_all(&tmp.0, &files);
    let msg = load_dataset(&spec, local_options(&tmp.0))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("4 labels for 5 images"), "{msg}");

    let mut files = raw_files();
    files[3] = encode_idx(&[3], &[2, 10, 8]).unwrap();
    write_all(&tmp.0, &files);
    let msg = load_dataset(&spec, local_options(&tmp.0))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("label 10 at index 1"), "{msg}");

    let mut files = raw_files();
    files[2] = encode_idx(&[3, 784], &vec![0; 3 * 784]).unwrap();
    write_all(&tmp.0, &files);
    let msg = load_dataset(&spec, local_options(&tmp.0))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("[3, 784]"), "{msg}");

    let mut files = raw_files();
    let n = files[0].len();
    files[0].truncate(n - 10);
    write_all(&tmp.0, &files);
    let msg = load_dataset(&spec, local_options(&tmp.0))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte.gz") && msg.contains("truncated"),
        "{msg}"
    );
}
