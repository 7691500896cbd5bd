//! The opendal family: generic storage over any OpenDAL service (`fs` and `memory` are built
//! in), `OpendalClient`, and `j <opendal> ...`.
//!
//! Upstream's driver wraps the Python binding of the same Rust crate; this one uses the crate
//! directly, with upstream's method surface and value shapes (drivers notes §2.4): files are
//! opened by path (`open(path, mode)`) and addressed by a uuid `fd` (`file_read(fd, dst)`,
//! `file_write(fd, src)`, `file_seek(fd, pos, whence=0)`, `file_tell`, `file_close`,
//! `file_closed`, `file_readable`, `file_seekable`, `file_writable`); transfers go through
//! resource handles. Path operations: `stat`, `hash(path, algo="sha256")`, `copy`, `rename`,
//! `remove_all`, `create_dir`, `delete`, `exists`, the streaming `list` and `scan`,
//! `presign_stat|read|write(path, expire_second)`, `capability`, `get_created_resources`,
//! `register_path`.
//!
//! * [`interface`]: the interface, declared once, and `OpendalClient`.
//! * [`driver`]: the `Opendal` driver.
//! * [`cli`]: the `j` commands.

pub mod cli;
pub mod driver;
pub mod interface;

use jumpstarter_family::Families;

pub use driver::{Opendal, OpendalConfig, OpendalError, normalize};
pub use interface::{OpendalClient, OpendalInterface};

pub const OPENDAL: &str = "jumpstarter_driver_opendal.driver.Opendal";
pub const OPENDAL_CLIENT: &str = "jumpstarter_driver_opendal.client.OpendalClient";

/// The family's registration: the driver type and the `j` command set.
pub fn register(f: &mut Families) {
    f.driver(OPENDAL, driver::build)
        .commands(&[OPENDAL_CLIENT], cli::OpendalCommands);
}
