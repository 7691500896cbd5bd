//! Private socket directories: `$XDG_RUNTIME_DIR/jumpstarter-XXXXXXXX/socket` (or under the
//! temp dir), a fresh 0700 directory per socket, removed when dropped.

use std::path::{Path, PathBuf};

/// A private directory holding one socket path.
#[derive(Debug)]
pub struct SocketDir {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl SocketDir {
    /// Creates the directory under `$XDG_RUNTIME_DIR`, else `$TMPDIR`, else `/tmp`.
    pub fn new() -> std::io::Result<SocketDir> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        Self::new_in(&base)
    }

    pub fn new_in(base: &Path) -> std::io::Result<SocketDir> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("jumpstarter-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)?;
        // The umask may have narrowed it further, never widened it; make it exact.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let path = dir.path().join("socket");
        Ok(SocketDir { dir, path })
    }

    /// The socket path inside the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_directory() {
        let base = tempfile::tempdir().unwrap();
        let d = SocketDir::new_in(base.path()).unwrap();
        let mode = std::fs::metadata(d.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(
            d.dir()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("jumpstarter-")
        );
        assert_eq!(d.path().file_name().unwrap(), "socket");
        let dir = d.dir().to_owned();
        drop(d);
        assert!(!dir.exists());
    }
}
