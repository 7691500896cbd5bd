//! Log output for the CLI: `LEVEL [logger] message` lines.
//!
//! `jmp shell` and `j` print to stdout, like upstream (scripts grep it); `jmp run` prints to
//! stderr (journal friendly). `RUST_LOG` overrides the level filter.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. `level` is a Python level name (DEBUG, INFO, ...).
pub fn init(level: &str, sink: Sink) {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{level},h2=warn,hyper=warn,tonic=warn,tower=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(LineFormat);
    let result = match sink {
        Sink::Stdout => builder
            .with_writer(jumpstarter_core::out::LogStdout::new)
            .try_init(),
        Sink::Stderr => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests) is harmless.
    let _ = result;
}

struct LineFormat;

struct LoggerField<'a>(&'a mut Option<String>, &'a mut String);

impl tracing::field::Visit for LoggerField<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "logger" {
            *self.0 = Some(value.to_owned());
        } else if field.name() == "message" {
            self.1.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        match field.name() {
            "logger" => *self.0 = Some(format!("{value:?}")),
            "message" => {
                use fmt::Write;
                let _ = write!(self.1, "{value:?}");
            }
            other => {
                use fmt::Write;
                let _ = write!(self.1, " {other}={value:?}");
            }
        }
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        let mut logger = None;
        let mut message = String::new();
        event.record(&mut LoggerField(&mut logger, &mut message));
        let logger = logger.unwrap_or_else(|| event.metadata().target().replace("::", "."));
        writeln!(writer, "{level:<8} [{logger}] {message}")
    }
}
