//! The one error type of the command line: a message for the user, printed on stderr with
//! exit code 1 by `main`.

use std::fmt;

/// A failure the user can act on. The message names the file, key, shape or flag at fault.
#[derive(Debug)]
pub struct CliError(pub String);

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
    ($($arg:tt)*) => { $crate::error::CliError(format!($($arg)*)) };
}

/// Adds a "while doing X" prefix to any displayable error.
pub trait Context<T> {
    /// Wraps the error as `"{what}: {error}"`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| CliError(format!("{}: {e}", what())))
    }
}
