//! Everything the CLI writes: files (through `tinycnn::io::write_atomic`, the one atomic
//! writer of the workspace), the checks on output paths made before long work, and stdout
//! lines that end the run quietly when the reader of a pipe goes away.

use crate::error::{CliError, ExitKind, Result};
use std::io::Write;
use std::path::Path;

/// The runtime's message without the path it repeats: the CLI names the path itself.
fn describe(e: tinycnn::Error, path: &Path) -> String {
    match e {
        tinycnn::Error::Format { path: p, msg } if p == path => msg,
        tinycnn::Error::Io { path: p, source } if p == path => source.to_string(),
        other => other.to_string(),
    }
}

/// Writes `bytes` to `path` atomically (see `tinycnn::io::write_atomic`).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    tinycnn::io::write_atomic(path, bytes)
        .map_err(|e| crate::cli_err!("cannot write {}: {}", path.display(), describe(e, path)))
}

/// Checks output files before any long work: each must be writable (an existing target a
/// regular file, its directory writable) and no two may be the same file, whatever the
/// spelling (`./x` and `x`, a symbolic link and its target, hard links). `outputs` pairs
/// each path with the flag that named it, for the message.
pub fn check_outputs(outputs: &[(&str, &Path)]) -> Result<()> {
    let mut resolved = Vec::with_capacity(outputs.len());
    for &(flag, path) in outputs {
        let target = tinycnn::io::check_writable(path)
            .map_err(|e| crate::cli_err!("{flag} {}: {}", path.display(), describe(e, path)))?;
        resolved.push(target);
    }
    for (i, &(flag_a, a)) in outputs.iter().enumerate() {
        for &(flag_b, b) in &outputs[i + 1..] {
            let same = tinycnn::io::same_output(a, b).map_err(|e| crate::cli_err!("{e}"))?;
            if same {
                return Err(crate::cli_err!(
                    "{flag_a} {} and {flag_b} {} are the same file ({}); each output needs its own file",
                    a.display(),
                    b.display(),
                    resolved[i].display()
                ));
            }
        }
    }
    Ok(())
}

/// Set on the ranks other than 0 of a distributed run: they print nothing to stdout.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Silences [`stdout_text`] (and so `outln!`) for the rest of the process.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))] // only MPI ranks go quiet
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Writes `text` to stdout (nothing after [`set_quiet`]). A closed pipe (`tinycnn train | head`) becomes
/// [`ExitKind::BrokenPipe`], which `main` turns into a quiet exit with status 141, what a
/// shell reports for a process ended by SIGPIPE.
pub fn stdout_text(text: &str) -> Result<()> {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                CliError::Msg("stdout was closed".to_string(), ExitKind::BrokenPipe)
            } else {
                crate::cli_err!("cannot write to stdout: {e}")
            }
        })
}

/// `println!` that returns an error instead of panicking when stdout is closed.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::stdout_text(&format!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that returns an error instead of panicking when stdout is closed.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::stdout_text(&format!($($arg)*)) };
}
