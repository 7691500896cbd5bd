//! A pseudo-terminal standing in for a serial device, for tests without hardware.
//!
//! [`PtyDevice`] opens a pty pair: the slave side (a real tty path such as `/dev/pts/3`) is
//! what a `PySerial` driver is configured with; the test plays the device on the master side.
//! A background thread collects everything the driver writes, and can answer line by line.
//!
//! ```no_run
//! use std::time::Duration;
//! use jumpstarter_drivers::serial::testing::PtyDevice;
//!
//! let dev = PtyDevice::with_line_responder(|line| Some([b"got:", line, b"\r\n"].concat())).unwrap();
//! println!("url: {}", dev.path().display());
//! assert!(dev.wait_for(b"reset\n", Duration::from_secs(5)));
//! ```

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, ControlFlags, SetArg, Termios};

struct Pair {
    master: OwnedFd,
    slave: OwnedFd,
}

type Responder = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + Send>;

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<u8>>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A pty pair playing a serial device; see the module docs.
pub struct PtyDevice {
    path: PathBuf,
    master: Option<File>,
    /// Held open so the line exists (and keeps its settings) while no driver has it open.
    slave: Option<OwnedFd>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl PtyDevice {
    /// A device that only records what it receives.
    pub fn open() -> io::Result<PtyDevice> {
        Self::start(None, true)
    }

    /// A terminal rather than a device: the line keeps the kernel's defaults (canonical mode,
    /// echo), for running programs that expect to be on a terminal ([`PtyDevice::open_slave`]
    /// as their stdin/stdout); the master side is the person typing and watching.
    pub fn terminal() -> io::Result<PtyDevice> {
        Self::start(None, false)
    }

    /// A device that answers each line it receives (ended by `\n` or `\r`, given without the
    /// terminator) with what `respond` returns.
    pub fn with_line_responder(
        respond: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> io::Result<PtyDevice> {
        Self::start(Some(Box::new(respond)), true)
    }

    fn start(responder: Option<Responder>, device: bool) -> io::Result<PtyDevice> {
        // Both ends close-on-exec from the start: a master inherited by any child process
        // (tests spawn many, in parallel) would keep the device "plugged in".
        use nix::fcntl::OFlag;
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        nix::pty::grantpt(&master)?;
        nix::pty::unlockpt(&master)?;
        let path = PathBuf::from(nix::pty::ptsname_r(&master)?);
        let slave: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(&path)?
            .into();
        let pty = Pair {
            master: OwnedFd::from(master),
            slave,
        };
        if device {
            // A UART does not echo or translate: start the line raw. Unlike ptys, serial ports
            // start with HUPCL set (hang up, i.e. drop DTR, on last close): set it too.
            let mut t = termios::tcgetattr(&pty.slave)?;
            termios::cfmakeraw(&mut t);
            t.control_flags.insert(ControlFlags::HUPCL);
            termios::tcsetattr(&pty.slave, SetArg::TCSANOW, &t)?;
        }
        let master = File::from(pty.master);
        let reader_end = master.try_clone()?;
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("pty-device".into())
                .spawn(move || read_loop(reader_end, shared, stop, responder))?
        };
        Ok(PtyDevice {
            path,
            master: Some(master),
            slave: Some(pty.slave),
            shared,
            stop,
            reader: Some(reader),
        })
    }

    /// The tty path to configure as the driver's `url`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new handle on the tty (e.g. for a child process's stdin or stdout); it does not
    /// become anyone's controlling terminal.
    pub fn open_slave(&self) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(&self.path)
    }

    /// Sends bytes from the device to whoever has the tty open.
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        let mut m = self.master.as_ref().ok_or_else(hung_up)?;
        m.write_all(data)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<u8> {
        self.shared.lock().clone()
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        self.shared.lock().clear();
    }

    /// Waits until `needle` has been received; false when `timeout` passes first.
    pub fn wait_for(&self, needle: &[u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut got = self.shared.lock();
        loop {
            if contains(&got, needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            got = self
                .shared
                .changed
                .wait_timeout(got, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The line's current settings (read through the master, which reports the slave's).
    pub fn termios(&self) -> io::Result<Termios> {
        let m = self.master.as_ref().ok_or_else(hung_up)?;
        Ok(termios::tcgetattr(m.as_fd())?)
    }

    /// Unplugs the device: closes the master side, so every open handle of the tty is hung up.
    pub fn hang_up(&mut self) {
        self.stop_reader();
        self.master = None;
    }

    fn stop_reader(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for PtyDevice {
    fn drop(&mut self) {
        self.stop_reader();
        self.master = None;
        self.slave = None;
    }
}

fn hung_up() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the pty device was hung up")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn read_loop(
    mut master: File,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    mut responder: Option<Responder>,
) {
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(20u8)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let n = match master.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // EIO: no slave side open (cannot happen while we hold it) or torn down.
            Err(_) => return,
        };
        {
            let mut got = shared.lock();
            got.extend_from_slice(&buf[..n]);
            shared.changed.notify_all();
        }
        let Some(respond) = responder.as_mut() else {
            continue;
        };
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                if line.is_empty() {
                    continue;
                }
                if let Some(reply) = respond(&line)
                    && master.write_all(&reply).is_err()
                {
                    return;
                }
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_slave_path_is_a_raw_tty_and_lines_get_answers() {
        let dev = PtyDevice::with_line_responder(|l| Some([b"<", l, b">"].concat())).unwrap();
        let mut tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev.path())
            .unwrap();
        tty.write_all(b"ping\r\n").unwrap();
        assert!(dev.wait_for(b"ping\r\n", Duration::from_secs(10)));
        let mut reply = [0u8; 6];
        tty.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"<ping>");
        dev.write(b"unsolicited").unwrap();
        let mut got = [0u8; 11];
        tty.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"unsolicited");
        assert!(!dev.wait_for(b"never", Duration::from_millis(1)));
    }
}
