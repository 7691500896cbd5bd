//! Session logs: what `LogStream` serves.
//!
//! Each session owns a [`LogHub`]. Drivers log through a [`Logger`] (named `driver.<Class>` as
//! upstream names driver loggers), the exporter runtime logs system and hook lines into the
//! same hub. Every record is also emitted as a `tracing` event so it reaches the local console
//! or journal. Unlike upstream (which hands each record to only one reader), the hub
//! broadcasts: every `LogStream` reader sees every record, and a new reader first gets the
//! last [`BACKLOG`] records.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use jumpstarter_protocol::v1::LogSource;
use tokio::sync::broadcast;

/// How many past records a new `LogStream` reader receives.
pub const BACKLOG: usize = 256;

/// Log severities, named as Python's logging levels (that is what goes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// Parses a Python level name (case-insensitive; `WARN` and `FATAL` accepted).
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_uppercase().as_str() {
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARNING" | "WARN" => Some(Level::Warning),
            "ERROR" => Some(Level::Error),
            "CRITICAL" | "FATAL" => Some(Level::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One log record as `LogStream` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: Level,
    pub message: String,
    pub source: LogSource,
    /// The logger name (`driver.MockPower`, `exporter:beforeLease`, ...), for local output.
    pub logger: Arc<str>,
}

struct HubInner {
    tx: broadcast::Sender<LogRecord>,
    backlog: Mutex<VecDeque<LogRecord>>,
}

/// A broadcast of log records with a bounded backlog.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<HubInner>,
}

impl Default for LogHub {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LogHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHub").finish_non_exhaustive()
    }
}

impl LogHub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        LogHub {
            inner: Arc::new(HubInner {
                tx,
                backlog: Mutex::new(VecDeque::with_capacity(BACKLOG)),
            }),
        }
    }

    /// Publishes a record to current readers and the backlog.
    pub fn publish(&self, record: LogRecord) {
        let mut backlog = self.inner.backlog.lock().unwrap_or_else(|e| e.into_inner());
        if backlog.len() == BACKLOG {
            backlog.pop_front();
        }
        backlog.push_back(record.clone());
        // No receivers is fine: the record stays in the backlog.
        let _ = self.inner.tx.send(record);
    }

    /// Forgets the backlog (a new session starts: new readers should not see the old one's
    /// records). Current readers are not affected.
    pub fn clear_backlog(&self) {
        self.inner
            .backlog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The backlog, and a receiver for everything published after it.
    pub fn subscribe(&self) -> (Vec<LogRecord>, broadcast::Receiver<LogRecord>) {
        let backlog = self.inner.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.inner.tx.subscribe();
        (backlog.iter().cloned().collect(), rx)
    }

    /// A logger that publishes with the given source.
    pub fn logger(&self, name: impl Into<Arc<str>>, source: LogSource, level: Level) -> Logger {
        Logger {
            name: name.into(),
            source,
            level,
            hub: self.clone(),
        }
    }

    /// The logger for a driver class: `driver.<Class>`, source DRIVER.
    pub fn driver_logger(&self, class: &str, level: Level) -> Logger {
        self.logger(format!("driver.{class}"), LogSource::Driver, level)
    }

    /// The logger for exporter and session messages (source SYSTEM).
    pub fn system_logger(&self) -> Logger {
        self.logger("exporter", LogSource::System, Level::Info)
    }
}

/// A named logger writing into a [`LogHub`] and to `tracing`.
#[derive(Clone)]
pub struct Logger {
    name: Arc<str>,
    source: LogSource,
    level: Level,
    hub: LogHub,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("name", &self.name)
            .field("level", &self.level)
            .finish()
    }
}

impl Logger {
    /// A logger attached to a private hub (for drivers built outside a session).
    pub fn detached(name: &str) -> Logger {
        LogHub::new().logger(name.to_owned(), LogSource::System, Level::Info)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn enabled(&self, level: Level) -> bool {
        level >= self.level
    }

    pub fn log(&self, level: Level, message: impl Into<String>) {
        if !self.enabled(level) {
            return;
        }
        let message = message.into();
        match level {
            Level::Debug => tracing::debug!(logger = %self.name, "{message}"),
            Level::Info => tracing::info!(logger = %self.name, "{message}"),
            Level::Warning => tracing::warn!(logger = %self.name, "{message}"),
            Level::Error | Level::Critical => tracing::error!(logger = %self.name, "{message}"),
        }
        self.hub.publish(LogRecord {
            level,
            message,
            source: self.source,
            logger: self.name.clone(),
        });
    }

    pub fn debug(&self, message: impl Into<String>) {
        self.log(Level::Debug, message)
    }
    pub fn info(&self, message: impl Into<String>) {
        self.log(Level::Info, message)
    }
    pub fn warning(&self, message: impl Into<String>) {
        self.log(Level::Warning, message)
    }
    pub fn error(&self, message: impl Into<String>) {
        self.log(Level::Error, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_get_backlog_then_live_records() {
        let hub = LogHub::new();
        let log = hub.driver_logger("MockPower", Level::Info);
        log.info("power on");
        log.debug("hidden");
        let (backlog, mut rx) = hub.subscribe();
        assert_eq!(backlog.len(), 1);
        assert_eq!(backlog[0].message, "power on");
        assert_eq!(backlog[0].source, LogSource::Driver);
        assert_eq!(&*backlog[0].logger, "driver.MockPower");
        log.warning("careful");
        let r = rx.recv().await.unwrap();
        assert_eq!((r.level, r.message.as_str()), (Level::Warning, "careful"));
        // A second reader sees the same records (broadcast, not a shared queue).
        let (again, _) = hub.subscribe();
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn backlog_is_bounded() {
        let hub = LogHub::new();
        let log = hub.system_logger();
        for i in 0..(BACKLOG + 10) {
            log.info(format!("{i}"));
        }
        let (backlog, _) = hub.subscribe();
        assert_eq!(backlog.len(), BACKLOG);
        assert_eq!(backlog[0].message, "10");
        hub.clear_backlog();
        log.info("fresh");
        let (backlog, _) = hub.subscribe();
        assert_eq!(backlog.len(), 1);
    }

    #[test]
    fn level_names() {
        assert_eq!(Level::parse("warn"), Some(Level::Warning));
        assert_eq!(Level::parse("Info"), Some(Level::Info));
        assert_eq!(Level::parse("loud"), None);
        assert_eq!(Level::Critical.to_string(), "CRITICAL");
    }
}
