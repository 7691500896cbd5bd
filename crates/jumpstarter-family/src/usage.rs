//! Usage errors in click's shape (what upstream `j` prints), from clap errors.
//!
//! ```text
//! Usage: j power [OPTIONS] COMMAND [ARGS]...
//! Try 'j power --help' for help.
//!
//! Error: No such command 'of'. Did you mean 'off'?
//! ```

use clap::Command;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// What to do with a clap error: the text, where it goes, and the exit code.
pub struct Rendered {
    pub text: String,
    pub to_stdout: bool,
    pub code: i32,
}

/// The width click lays help out in when it cannot ask a terminal (80 columns, less 2).
pub const HELP_WIDTH: usize = 78;

/// Renders a clap error of the command tree `root` for the arguments `args` (without the
/// program name) as click would: the usage line and the message are those of the sub-command
/// the arguments had reached (`j power cycle -w abc` fails in `j power cycle`).
pub fn render_in(err: &clap::Error, root: &Command, args: &[String]) -> Rendered {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingSubcommand => render(err),
        _ => {
            let (cmd, path, rest) = locate(root, args);
            let usage = click_usage(cmd, &path);
            Rendered {
                text: format!(
                    "Usage: {usage}\nTry '{path} --help' for help.\n\nError: {}\n",
                    message_in(err, cmd, rest)
                ),
                to_stdout: false,
                code: 1,
            }
        }
    }
}

/// The sub-command `args` reach from `root`, its command path, and the arguments after its
/// name. Option values are skipped, so a value that looks like a command name is not one.
fn locate<'a, 's>(root: &'a Command, args: &'s [String]) -> (&'a Command, String, &'s [String]) {
    let mut cmd = root;
    let mut path = root.get_name().to_owned();
    let mut rest = args;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            break;
        }
        if let Some(opt) = a.strip_prefix('-').filter(|o| !o.is_empty()) {
            if !a.contains('=') && takes_value(cmd, opt) {
                i += 1;
            }
        } else if let Some(sub) = cmd.find_subcommand(a) {
            cmd = sub;
            path = format!("{path} {}", sub.get_name());
            rest = &args[i + 1..];
        }
        i += 1;
    }
    (cmd, path, rest)
}

/// Whether the option `opt` (`-w`, `-wabc` or `--wait` without the first dash) of `cmd`
/// takes its value from the next argument.
fn takes_value(cmd: &Command, opt: &str) -> bool {
    let arg = if let Some(long) = opt.strip_prefix('-') {
        cmd.get_arguments().find(|a| a.get_long() == Some(long))
    } else {
        let mut chars = opt.chars();
        let short = chars.next();
        if chars.next().is_some() {
            return false; // `-wabc`: the value is attached
        }
        cmd.get_arguments().find(|a| a.get_short() == short)
    };
    arg.is_some_and(|a| a.get_action().takes_values())
}

/// click's usage line of a command (without `Usage: `): a group's is `PATH [OPTIONS] COMMAND
/// [ARGS]...`, any other's `PATH [OPTIONS]` and its positional arguments (`PORT`, `[PATH]`,
/// `[FILE]...`).
pub fn click_usage(cmd: &Command, path: &str) -> String {
    if cmd.has_subcommands() {
        return format!("{path} [OPTIONS] COMMAND [ARGS]...");
    }
    let mut usage = format!("{path} [OPTIONS]");
    for a in cmd.get_positionals() {
        let name = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|n| n.to_string())
            .unwrap_or_else(|| a.get_id().to_string())
            .to_uppercase();
        let many = a.get_num_args().is_some_and(|n| n.max_values() > 1);
        let mut word = if a.is_required_set() {
            name
        } else {
            format!("[{name}]")
        };
        if many {
            word.push_str("...");
        }
        usage.push(' ');
        usage.push_str(&word);
    }
    usage
}

/// click's hint for a parameter: `'--wait' / '-w'` for an option, `'PORT'` for an argument.
fn param_hint(cmd: &Command, invalid_arg: &str) -> String {
    let first = invalid_arg.split([' ', '=']).next().unwrap_or(invalid_arg);
    let arg = if let Some(long) = first.strip_prefix("--") {
        cmd.get_arguments().find(|a| a.get_long() == Some(long))
    } else if let Some(short) = first.strip_prefix('-') {
        cmd.get_arguments()
            .find(|a| a.get_short().is_some_and(|s| short.starts_with(s)))
    } else {
        let name = first.trim_matches(['<', '>']);
        cmd.get_positionals().find(|a| {
            a.get_id() == name
                || a.get_value_names()
                    .is_some_and(|v| v.iter().any(|n| n == name))
        })
    };
    match arg {
        Some(a) if !a.is_positional() => {
            let mut names = Vec::new();
            if let Some(l) = a.get_long() {
                names.push(format!("'--{l}'"));
            }
            if let Some(s) = a.get_short() {
                names.push(format!("'-{s}'"));
            }
            names.join(" / ")
        }
        Some(a) => format!(
            "'{}'",
            a.get_value_names()
                .and_then(|v| v.first())
                .map(|n| n.to_string())
                .unwrap_or_else(|| a.get_id().to_string())
                .to_uppercase()
        ),
        None => format!("'{}'", first.trim_matches(['<', '>'])),
    }
}

/// Why a value was refused, in click's words (`'abc' is not a valid integer.`).
fn invalid_value(err: &clap::Error, value: &str) -> String {
    use std::error::Error as _;
    let choices = context_strings(err, ContextKind::ValidValue);
    if !choices.is_empty() {
        let list: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
        return if list.len() == 1 {
            format!("'{value}' is not {}.", list[0])
        } else {
            format!("'{value}' is not one of {}.", list.join(", "))
        };
    }
    let source = err.source();
    if source.is_some_and(|s| s.downcast_ref::<std::num::ParseIntError>().is_some()) {
        return format!("'{value}' is not a valid integer.");
    }
    if source.is_some_and(|s| s.downcast_ref::<std::num::ParseFloatError>().is_some()) {
        return format!("'{value}' is not a valid float.");
    }
    match source {
        Some(s) => format!("'{value}' is not valid: {s}."),
        None => format!("'{value}' is not valid."),
    }
}

fn message_in(err: &clap::Error, cmd: &Command, rest: &[String]) -> String {
    match err.kind() {
        ErrorKind::UnknownArgument => {
            let arg = context_str(err, ContextKind::InvalidArg).unwrap_or_default();
            if arg.starts_with('-') && arg != "-" {
                let mut msg = format!("No such option '{arg}'.");
                if let Some(s) = context_str(err, ContextKind::SuggestedArg) {
                    msg.push_str(&format!(" Did you mean '{s}'?"));
                }
                msg
            } else {
                // click lists every argument left over, not only the first.
                let at = rest.iter().position(|a| *a == arg).unwrap_or(rest.len());
                let mut extra: Vec<&str> = rest[at..]
                    .iter()
                    .map(String::as_str)
                    .filter(|a| !a.starts_with('-') || *a == "-")
                    .collect();
                if extra.is_empty() {
                    extra.push(&arg);
                }
                let s = if extra.len() == 1 { "" } else { "s" };
                format!("Got unexpected extra argument{s} ({})", extra.join(" "))
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = context_str(err, ContextKind::InvalidArg).unwrap_or_default();
            let value = context_str(err, ContextKind::InvalidValue).unwrap_or_default();
            format!(
                "Invalid value for {}: {}",
                param_hint(cmd, &arg),
                invalid_value(err, &value)
            )
        }
        _ => message(err, &err.render().to_string()),
    }
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

fn context_strings(err: &clap::Error, kind: ContextKind) -> Vec<String> {
    match err.get(kind) {
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::String(s)) => vec![s.clone()],
        _ => Vec::new(),
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
            format!("No such option '{arg}'.")
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

/// The one line a group's command list shows for a command, as click makes it from the help:
/// the first paragraph with its whitespace collapsed, cut after its first sentence (a period
/// not followed by a lower-case word), and shortened at a word to `max` characters with `...`.
pub fn short_help(help: &str, max: usize) -> String {
    let first = help.split("\n\n").next().unwrap_or_default();
    let mut words: Vec<&str> = first.split_whitespace().collect();
    if words.first() == Some(&"\u{8}") {
        words.remove(0);
    }
    if let Some(end) = (0..words.len()).find(|&i| {
        words[i].ends_with('.')
            && words
                .get(i + 1)
                .is_none_or(|next| !next.chars().next().is_some_and(char::is_lowercase))
    }) {
        words.truncate(end + 1);
    }
    let text = words.join(" ");
    let width = |s: &str| s.chars().count();
    if width(&text) <= max {
        return text;
    }
    const MORE: &str = "...";
    // Whole words while they and the marker fit.
    let mut out = String::new();
    for w in &words {
        let sep = usize::from(!out.is_empty());
        if width(&out) + sep + width(w) + MORE.len() > max {
            break;
        }
        if sep == 1 {
            out.push(' ');
        }
        out.push_str(w);
    }
    out.push_str(MORE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, value_parser};

    #[test]
    fn short_help_is_the_first_sentence_shortened() {
        assert_eq!(
            short_help(
                "Forward local TCP port to remote network\n\nPORT is the TCP port to listen on.",
                59
            ),
            "Forward local TCP port to remote network"
        );
        assert_eq!(short_help("Power on. Then wait.", 45), "Power on.");
        assert_eq!(
            short_help("Compare a vs. b here", 45),
            "Compare a vs. b here"
        );
        assert_eq!(
            short_help("one two three four five six seven eight nine ten", 20),
            "one two three..."
        );
        assert_eq!(short_help("", 20), "");
        assert_eq!(short_help("line one\nline two", 45), "line one line two");
    }

    fn power() -> Command {
        Command::new("j").subcommand(
            Command::new("power").subcommand(
                Command::new("cycle").arg(
                    Arg::new("wait")
                        .short('w')
                        .long("wait")
                        .value_parser(value_parser!(u64)),
                ),
            ),
        )
    }

    fn rendered(cmd: &Command, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let argv = std::iter::once("j".to_owned()).chain(args.iter().cloned());
        let err = cmd.clone().try_get_matches_from(argv).unwrap_err();
        render_in(&err, cmd, &args).text
    }

    #[test]
    fn errors_name_the_command_they_happen_in() {
        let cmd = power();
        assert_eq!(
            rendered(&cmd, &["power", "cycle", "-w", "abc"]),
            "Usage: j power cycle [OPTIONS]\nTry 'j power cycle --help' for help.\n\n\
             Error: Invalid value for '--wait' / '-w': 'abc' is not a valid integer.\n"
        );
        assert_eq!(
            rendered(&cmd, &["power", "cycle", "-w", "1", "2", "3"]),
            "Usage: j power cycle [OPTIONS]\nTry 'j power cycle --help' for help.\n\n\
             Error: Got unexpected extra arguments (2 3)\n"
        );
        assert!(
            rendered(&cmd, &["power", "cycle", "extra"])
                .ends_with("Error: Got unexpected extra argument (extra)\n")
        );
        assert!(
            rendered(&cmd, &["power", "cycle", "--bogus"])
                .ends_with("Error: No such option '--bogus'.\n")
        );
    }

    #[test]
    fn click_usage_lines() {
        let c = Command::new("flash")
            .arg(
                Arg::new("file")
                    .value_name("FILE")
                    .num_args(0..)
                    .action(ArgAction::Append),
            )
            .arg(Arg::new("port").value_name("PORT").required(true));
        assert_eq!(
            click_usage(&c, "j s flash"),
            "j s flash [OPTIONS] [FILE]... PORT"
        );
        let c = Command::new("x").arg(Arg::new("path"));
        assert_eq!(click_usage(&c, "j x"), "j x [OPTIONS] [PATH]");
    }
}
