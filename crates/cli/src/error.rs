//! The one error type of the command line: a message for the user, printed on stderr by
//! `main`, and how the process ends.

use std::fmt;

/// How a failed run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A failure: `error: <message>` on stderr, exit status 1.
    Failure,
    /// The reader of stdout went away (`tinycnn train | head`): no message, exit status 141
    /// (128 + SIGPIPE, what a shell shows for `yes | head`'s `yes`).
    BrokenPipe,
    /// Ctrl-C (SIGINT) stopped training at a safe point: the message as is on stderr, exit
    /// status 130 (128 + SIGINT).
    Interrupted,
}

impl ExitKind {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Failure => 1,
            ExitKind::BrokenPipe => 141,
            ExitKind::Interrupted => 130,
        }
    }
}

/// A failure the user can act on. The message names the file, key, shape or flag at fault.
#[derive(Debug)]
pub struct CliError(pub String, pub ExitKind);

/// Result alias used throughout the CLI.
pub type Result<T> = std::result::Result<T, CliError>;

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// Builds a [`CliError`] from a format string: `bail!("no such file {}", p)`.
#[macro_export]
macro_rules! cli_err {
    ($($arg:tt)*) => {
        $crate::error::CliError(format!($($arg)*), $crate::error::ExitKind::Failure)
    };
}

/// Adds a "while doing X" prefix to any displayable error.
pub trait Context<T> {
    /// Wraps the error as `"{what}: {error}"`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| CliError(format!("{}: {e}", what()), ExitKind::Failure))
    }
}

/// Joins names for a message, at most `max` of them, the rest counted:
/// `a, b, c ... and 99,997 more`. Keeps an error about a file with 100,000 keys one line.
pub fn short_list<S: AsRef<str>>(items: &[S], max: usize) -> String {
    let shown: Vec<&str> = items.iter().take(max).map(AsRef::as_ref).collect();
    let mut s = shown.join(", ");
    if items.len() > max {
        s.push_str(&format!(
            " ... and {} more",
            group_thousands(items.len() - max)
        ));
    }
    s
}

/// `99997` -> `99,997`.
pub fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_and_counted() {
        let keys: Vec<String> = (0..100_000).map(|i| format!("k{i}")).collect();
        assert_eq!(short_list(&keys, 3), "k0, k1, k2 ... and 99,997 more");
        assert_eq!(short_list(&["a", "b"], 3), "a, b");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(group_thousands(999), "999");
    }
}
