//! Plain-HTTP download of one file, verified by MD5 and moved into place atomically.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use md5::{Digest, Md5};

use super::{DataError, Result};

/// The most bytes one download may deliver (256 MiB); Fashion-MNIST's largest file is 26 MB.
const MAX_DOWNLOAD_BYTES: u64 = 256 << 20;

/// Progress of a download, reported through [`DownloadOptions::progress`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownloadEvent {
    /// A file's transfer began; `total` is the server's `Content-Length`, when it sent one.
    Started {
        /// The file's name.
        file: String,
        /// Its position among the files being fetched (0-based).
        index: usize,
        /// How many files are being fetched.
        count: usize,
        /// Expected size in bytes.
        total: Option<u64>,
    },
    /// More bytes of the current file arrived.
    Progress {
        /// The file's name.
        file: String,
        /// Bytes received so far.
        done: u64,
        /// Expected size in bytes.
        total: Option<u64>,
    },
    /// The file passed its MD5 check and now lies at `path`.
    Finished {
        /// The file's name.
        file: String,
        /// Where it was stored.
        path: PathBuf,
    },
}

/// How downloads talk to the server.
pub struct DownloadOptions<'a> {
    /// Limit on connecting and on each wait for data (default 30 s), so a stalled server
    /// produces an error instead of a hang.
    pub timeout: Duration,
    /// Called as bytes arrive; the CLI draws a progress bar from it.
    pub progress: Option<&'a mut dyn FnMut(&DownloadEvent)>,
}

impl Default for DownloadOptions<'_> {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            progress: None,
        }
    }
}

impl std::fmt::Debug for DownloadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("timeout", &self.timeout)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl DownloadOptions<'_> {
    fn emit(&mut self, event: DownloadEvent) {
        if let Some(callback) = self.progress.as_mut() {
            callback(&event);
        }
    }
}

/// Downloads `url` to `dest`, keeping it only if its MD5 sum equals `expected_md5` (hex, any case).
///
/// The bytes go to a temporary file beside `dest` that is renamed over `dest` only after the
/// whole body arrived and matched; on any error (HTTP status, timeout, body shorter than its
/// `Content-Length`, checksum mismatch) the temporary file is removed and `dest` is untouched.
/// `index`/`count` are passed through to the progress events.
pub fn download_file(
    url: &str,
    dest: &Path,
    expected_md5: &str,
    index: usize,
    count: usize,
    options: &mut DownloadOptions<'_>,
) -> Result<PathBuf> {
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            DataError::InvalidArgument(format!(
                "download destination {} has no file name",
                dest.display()
            ))
        })?;
    let expected = expected_md5.trim().to_ascii_lowercase();
    if expected.len() != 32 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DataError::InvalidArgument(format!(
            "{expected_md5:?} is not an MD5 hex digest"
        )));
    }
    let failed = |reason: String| DataError::Download {
        url: url.to_string(),
        reason,
    };

    let agent = make_agent(url, options.timeout);
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| failed(describe_ureq_error(e)))?;
    let total = response.body().content_length();
    if let Some(total) = total {
        if total > MAX_DOWNLOAD_BYTES {
            return Err(failed(format!(
                "server announces {total} bytes, more than the {MAX_DOWNLOAD_BYTES}-byte limit"
            )));
        }
    }
    options.emit(DownloadEvent::Started {
        file: file_name.clone(),
        index,
        count,
        total,
    });

    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = TempFile::create(dir, &file_name)?;
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .reader();
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(failed(format!(
                    "after {done} bytes: {}",
                    describe_io_error(&e)
                )))
            }
        };
        hasher.update(&buf[..n]);
        temp.file
            .write_all(&buf[..n])
            .map_err(|source| DataError::Io {
                path: temp.path.clone(),
                source,
            })?;
        done += n as u64;
        if done > MAX_DOWNLOAD_BYTES {
            return Err(failed(format!(
                "body exceeds the {MAX_DOWNLOAD_BYTES}-byte limit"
            )));
        }
        options.emit(DownloadEvent::Progress {
            file: file_name.clone(),
            done,
            total,
        });
    }
    if let Some(total) = total {
        if done != total {
            return Err(failed(format!(
                "truncated: received {done} of {total} bytes"
            )));
        }
    }
    let actual = hex(&hasher.finalize());
    if actual != expected {
        return Err(DataError::ChecksumMismatch {
            url: url.to_string(),
            expected,
            actual,
        });
    }
    temp.persist(dest)?;
    options.emit(DownloadEvent::Finished {
        file: file_name,
        path: dest.to_path_buf(),
    });
    Ok(dest.to_path_buf())
}

fn make_agent(url: &str, timeout: Duration) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .user_agent(concat!("tinycnn/", env!("CARGO_PKG_VERSION")));
    // A proxy from the environment must not intercept a loopback server (tests, local mirrors).
    if is_loopback_url(url) {
        config = config.proxy(None);
    }
    config.build().new_agent()
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(stripped) = host.strip_prefix('[') {
        stripped.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn describe_ureq_error(err: ureq::Error) -> String {
    match err {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        ureq::Error::Io(e) => describe_io_error(&e),
        other => other.to_string(),
    }
}

fn describe_io_error(err: &std::io::Error) -> String {
    match err.kind() {
        ErrorKind::UnexpectedEof => format!("truncated: connection closed early ({err})"),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => format!("timed out ({err})"),
        _ => err.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file in the destination's directory that is deleted on drop unless renamed into place.
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempFile {
    fn create(dir: &Path, base: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{base}.part-{}-{n}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| DataError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file,
            keep: false,
        })
    }

    fn persist(mut self, dest: &Path) -> Result<()> {
        self.file.sync_all().map_err(|source| DataError::Io {
            path: self.path.clone(),
            source,
        })?;
        fs::rename(&self.path, dest).map_err(|source| DataError::Io {
            path: dest.to_path_buf(),
            source,
        })?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:4000/x.gz"));
        assert!(is_loopback_url("http://localhost/"));
        assert!(is_loopback_url("http://[::1]:80/a"));
        assert!(is_loopback_url("http://127.3.2.1"));
        assert!(!is_loopback_url(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
        ));
        assert!(!is_loopback_url("http://10.0.0.1/"));
    }

    #[test]
    fn md5_hex_of_known_input() {
        // RFC 1321 test suite: MD5("abc").
        assert_eq!(
            hex(&Md5::digest(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn rejects_malformed_digest_without_network() {
        let err = download_file(
            "http://127.0.0.1:9/x",
            Path::new("/tmp/x"),
            "xyz",
            0,
            1,
            &mut DownloadOptions::default(),
        );
        assert!(matches!(err, Err(DataError::InvalidArgument(_))));
    }
}
