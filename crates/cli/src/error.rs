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

/// A failure the user can act on. The message names the file, key, shape or flag at fault;
/// a runtime error keeps the [`tinycnn::Error`] (op, shapes, kernel, device) as its source,
/// under the CLI's context.
#[derive(Debug)]
pub enum CliError {
    /// A message of the CLI's own, and how the process ends.
    Msg(String, ExitKind),
    /// The runtime failed while doing `context` (empty when the error says it all); boxed
    /// so that every `Result` of the CLI stays small.
    Runtime {
        context: String,
        source: Box<tinycnn::Error>,
    },
}

/// Result alias used throughout the CLI.
pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    /// How the process ends.
    pub fn kind(&self) -> ExitKind {
        match self {
            CliError::Msg(_, kind) => *kind,
            CliError::Runtime { .. } => ExitKind::Failure,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Msg(msg, _) => f.write_str(msg),
            CliError::Runtime { context, source } if context.is_empty() => source.fmt(f),
            CliError::Runtime { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Msg(..) => None,
            CliError::Runtime { source, .. } => Some(source.as_ref()),
        }
    }
}

impl From<tinycnn::Error> for CliError {
    fn from(source: tinycnn::Error) -> CliError {
        CliError::Runtime {
            context: String::new(),
            source: Box::new(source),
        }
    }
}

/// Wraps a runtime error with what the CLI was doing: `.map_err(runtime("reading x"))`.
pub fn runtime(context: impl Into<String>) -> impl FnOnce(tinycnn::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Runtime {
        context,
        source: Box::new(source),
    }
}

/// Builds a [`CliError`] from a format string: `bail!("no such file {}", p)`.
#[macro_export]
macro_rules! cli_err {
    ($($arg:tt)*) => {
        $crate::error::CliError::Msg(format!($($arg)*), $crate::error::ExitKind::Failure)
    };
}

/// Adds a "while doing X" prefix to any displayable error.
pub trait Context<T> {
    /// Wraps the error as `"{what}: {error}"`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| CliError::Msg(format!("{}: {e}", what()), ExitKind::Failure))
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
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
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

    #[test]
    fn runtime_errors_keep_their_source_under_the_context() {
        use std::error::Error as _;
        let inner = tinycnn::Tensor::new([1.0, 2.0]).reshape([3]).unwrap_err();
        let want = inner.to_string();
        let e = Err::<(), _>(inner)
            .map_err(runtime("w.safetensors"))
            .unwrap_err();
        assert_eq!(e.to_string(), format!("w.safetensors: {want}"));
        assert_eq!(e.source().unwrap().to_string(), want);
        assert_eq!(e.kind(), ExitKind::Failure);
        let bare = CliError::from(tinycnn::Error::Msg("m".into()));
        assert_eq!(bare.to_string(), "m");
    }
}
