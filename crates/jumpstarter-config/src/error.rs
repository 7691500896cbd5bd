//! Configuration errors. Every error about file content names the file, line and column.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::yaml::Pos;

/// Where a piece of configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file, or a label such as `<string>` for text that did not come from a file.
    pub file: Arc<Path>,
    pub pos: Pos,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.pos)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {message}")]
    Invalid { at: Source, message: String },
    #[error("{0}")]
    NotFound(String),
    /// A bad value in an environment variable.
    #[error("${var}: {message}")]
    Env { var: String, message: String },
    /// Settings that contradict each other (two selections given at once...).
    #[error("{0}")]
    Conflict(String),
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    pub fn invalid(file: &Arc<Path>, pos: Pos, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            at: Source {
                file: file.clone(),
                pos,
            },
            message: message.into(),
        }
    }

    /// The position the error points at, if it is about file content.
    pub fn source_pos(&self) -> Option<&Source> {
        match self {
            ConfigError::Invalid { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// A warning about valid but suspicious content, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub at: Source,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}
