//! Writing config files: atomically (temporary file in the same directory, fsync, rename).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::ConfigError;

/// Writes `contents` to `path` atomically with the given mode (0600 for files holding
/// tokens), creating the parent directory if needed. A reader sees the old file or the new
/// one, never a partial one; on error the old file is untouched.
pub fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Created with its final mode (never readable by others, not even for a moment); the
    // rename keeps it.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(contents.as_bytes()).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.yaml");
        write_atomic(&p, "a: 1\n", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 1\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // An existing file that was readable by others is replaced by a 0600 one.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, "a: 2\n", 0o600).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 2\n");
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
