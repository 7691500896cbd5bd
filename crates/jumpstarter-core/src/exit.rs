//! How a command-line program ends: one error type for `jmp`, `j` and `jmp-controller`.
//!
//! A command returns `Result<i32, CliError>`: `Ok(code)` is the exit status it chose (a `j`
//! shell method passes its process's status through), `Err` is printed once, by
//! [`CliError::report`], and gives the exit code of its kind: 2 for a usage error (as click and
//! clap do), 1 for a runtime failure. Library errors stay typed (with their source chain) until
//! this edge; [`CliError::from`] keeps the chain for `--log-level debug`-style reporting while
//! printing the one line upstream prints.

use std::error::Error as StdError;
use std::fmt;
use std::io::Write;

/// The exit code of a usage error (bad flags, missing arguments).
pub const USAGE: i32 = 2;
/// The exit code of a runtime failure.
pub const RUNTIME: i32 = 1;

/// What a command ends with when it fails.
///
/// Deliberately not `std::error::Error` (like `anyhow::Error`), so that every error type
/// converts into it with `?`.
pub struct CliError {
    message: String,
    code: i32,
    /// `Some(usage line)`: printed click-style before the message (`Usage: ...`, `Try ...`).
    usage: Option<String>,
    /// Printed as `Error: {message}` (the default) or as the bare message.
    prefix: bool,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

/// What a command returns: its exit code, or the error to report.
pub type CliResult = Result<i32, CliError>;

impl CliError {
    /// A runtime failure (exit 1), printed as `Error: {message}`.
    pub fn runtime(message: impl fmt::Display) -> Self {
        CliError {
            message: message.to_string(),
            code: RUNTIME,
            usage: None,
            prefix: true,
            source: None,
        }
    }

    /// A usage error (exit 2), printed as `Error: {message}`.
    pub fn usage(message: impl fmt::Display) -> Self {
        CliError {
            code: USAGE,
            ..CliError::runtime(message)
        }
    }

    /// A usage error printed the way click prints one: the usage line, how to get help, then
    /// `Error: {message}`.
    pub fn usage_of(usage: impl Into<String>, message: impl fmt::Display) -> Self {
        CliError {
            usage: Some(usage.into()),
            ..CliError::usage(message)
        }
    }

    /// A failure with its own exit code, printed as `Error: {message}`.
    pub fn with_code(message: impl fmt::Display, code: i32) -> Self {
        CliError {
            code,
            ..CliError::runtime(message)
        }
    }

    /// A failure whose text was already printed (or needs none): only the exit code remains.
    pub fn silent(code: i32) -> Self {
        CliError {
            code,
            ..CliError::runtime("")
        }
    }

    /// An error from a library, printed as `Error: {its Display}`, its source chain kept.
    pub fn from_error(err: impl StdError + Send + Sync + 'static) -> Self {
        CliError {
            source: Some(Box::new(err)),
            ..CliError::runtime("")
        }
    }

    /// Prints the message without the `Error: ` prefix (texts that carry their own wording).
    pub fn bare(mut self) -> Self {
        self.prefix = false;
        self
    }

    /// Adds context in front of the message: `{context}: {message}`.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.text());
        self
    }

    /// The exit code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The message as printed (without prefix or usage block).
    pub fn text(&self) -> String {
        match (&self.source, self.message.is_empty()) {
            (Some(source), true) => source.to_string(),
            _ => self.message.clone(),
        }
    }

    /// The causes below the message, outermost first.
    pub fn chain(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut next: Option<&(dyn StdError + 'static)> = match &self.source {
            Some(s) if self.message.is_empty() => s.source(),
            Some(s) => Some(s.as_ref()),
            None => None,
        };
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }

    /// Everything printed for this error (empty for [`CliError::silent`]).
    pub fn rendered(&self) -> String {
        let text = self.text();
        if text.is_empty() && self.usage.is_none() {
            return String::new();
        }
        let line = if self.prefix {
            format!("Error: {text}")
        } else {
            text
        };
        match &self.usage {
            Some(usage) => format!(
                "Usage: {usage}\nTry '{}' for help.\n\n{line}\n",
                help_of(usage)
            ),
            None => format!("{line}\n"),
        }
    }

    /// Prints the error to stderr (a closed stderr is ignored) and returns the exit code.
    pub fn report(&self) -> i32 {
        let text = self.rendered();
        if !text.is_empty() {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        self.code
    }
}

/// `jmp shell` from `jmp shell [OPTIONS]`: the words before the first option placeholder.
fn help_of(usage: &str) -> String {
    let cmd: Vec<&str> = usage
        .split_whitespace()
        .take_while(|w| !w.starts_with('['))
        .collect();
    format!("{} --help", cmd.join(" "))
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CliError")
            .field("text", &self.text())
            .field("code", &self.code)
            .field("chain", &self.chain())
            .finish()
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for CliError {
    fn from(err: E) -> Self {
        CliError::from_error(err)
    }
}

/// Turns any `Result` into a [`CliResult`] step with a context line.
pub trait Context<T> {
    /// On error: `{context}: {error}` as a runtime failure, the error kept as the source.
    fn context(self, context: impl fmt::Display) -> Result<T, CliError>;
}

impl<T, E: Into<CliError>> Context<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, CliError> {
        self.map_err(|e| e.into().context(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_choose_codes_and_texts() {
        let e = CliError::runtime("no such lease");
        assert_eq!(
            (e.code(), e.rendered()),
            (1, "Error: no such lease\n".into())
        );
        let e = CliError::usage("bad flag");
        assert_eq!(e.code(), 2);
        let e = CliError::usage_of("jmp shell [OPTIONS] [COMMAND]...", "missing selector");
        assert_eq!(
            e.rendered(),
            "Usage: jmp shell [OPTIONS] [COMMAND]...\nTry 'jmp shell --help' for help.\n\n\
             Error: missing selector\n"
        );
        assert_eq!(CliError::silent(3).rendered(), "");
        assert_eq!(CliError::runtime("x").bare().rendered(), "x\n");
    }

    #[test]
    fn library_errors_keep_their_chain() {
        let io = std::io::Error::other("disk on fire");
        let e: CliError = Err::<(), _>(io).context("writing config").unwrap_err();
        assert_eq!(e.text(), "writing config: disk on fire");
        assert_eq!(e.chain(), ["disk on fire"]);
        let e = CliError::from(std::fmt::Error);
        assert_eq!(e.code(), 1);
        assert!(e.chain().is_empty());
    }
}
