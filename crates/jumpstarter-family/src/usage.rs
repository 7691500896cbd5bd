//! Usage errors in click's shape (what upstream `j` prints), from clap errors.
//!
//! ```text
//! Usage: j power [OPTIONS] COMMAND [ARGS]...
//! Try 'j power --help' for help.
//!
//! Error: No such command 'of'. Did you mean 'off'?
//! ```

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// What to do with a clap error: the text, where it goes, and the exit code.
pub struct Rendered {
    pub text: String,
    pub to_stdout: bool,
    pub code: i32,
}

pub fn render(err: &clap::Error) -> Rendered {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Rendered {
            text: err.render().to_string(),
            to_stdout: true,
            code: 0,
        },
        // A group without a command: help on stderr, exit 1 (upstream `j`).
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            Rendered {
                text: err.render().to_string(),
                to_stdout: false,
                code: 1,
            }
        }
        _ => {
            let rendered = err.render().to_string();
            let usage = rendered
                .lines()
                .find(|l| l.starts_with("Usage:"))
                .unwrap_or("Usage: j [OPTIONS] COMMAND [ARGS]...")
                .to_owned();
            let path = usage
                .trim_start_matches("Usage: ")
                .split(' ')
                .take_while(|w| !w.starts_with('[') && !w.starts_with('<'))
                .collect::<Vec<_>>()
                .join(" ");
            Rendered {
                text: format!(
                    "{usage}\nTry '{path} --help' for help.\n\nError: {}\n",
                    message(err, &rendered)
                ),
                to_stdout: false,
                code: 1,
            }
        }
    }
}

fn context_str(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

fn message(err: &clap::Error, rendered: &str) -> String {
    match err.kind() {
        ErrorKind::InvalidSubcommand => {
            let name = context_str(err, ContextKind::InvalidSubcommand).unwrap_or_default();
            let mut msg = format!("No such command '{name}'.");
            if let Some(s) = context_str(err, ContextKind::SuggestedSubcommand) {
                msg.push_str(&format!(" Did you mean '{s}'?"));
            }
            msg
        }
        ErrorKind::UnknownArgument => {
            let arg = context_str(err, ContextKind::InvalidArg).unwrap_or_default();
            format!("No such option: {arg}")
        }
        ErrorKind::MissingRequiredArgument => {
            let arg = context_str(err, ContextKind::InvalidArg).unwrap_or_default();
            format!("Missing argument '{}'.", arg.trim_matches(['<', '>']))
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = context_str(err, ContextKind::InvalidArg).unwrap_or_default();
            let value = context_str(err, ContextKind::InvalidValue).unwrap_or_default();
            format!("Invalid value for '{arg}': '{value}' is not valid.")
        }
        _ => rendered
            .lines()
            .next()
            .unwrap_or("invalid usage")
            .trim_start_matches("error: ")
            .to_owned(),
    }
}
