//! Local ttys: opening (8N1, raw, shared access), termios details and modem lines.
//!
//! Ports are opened without exclusive access, as pyserial does, so `set_dtr`/`set_rts` can
//! open a second short-lived handle while a `connect` stream is active.
//!
//! After opening, [`tune`] rewrites the line speed with the classic `Bxxx` encoding when the
//! rate has one (serialport sets every rate through `termios2`/`BOTHER`, which older readers of
//! `tcgetattr` such as `stty` or Python's `termios` cannot show), and clears `HUPCL` when
//! `disable_hupcl` is set, so that closing the port does not drop DTR and reset a board.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::termios::{self, BaudRate, ControlFlags, SetArg};
use tokio_serial::{DataBits, FlowControl, Parity, SerialPort, SerialPortBuilder, StopBits};

/// Which modem control line to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Dtr,
    Rts,
}

impl Line {
    pub fn name(self) -> &'static str {
        match self {
            Line::Dtr => "DTR",
            Line::Rts => "RTS",
        }
    }

    /// The driver method that sets it.
    pub fn method(self) -> &'static str {
        match self {
            Line::Dtr => "set_dtr",
            Line::Rts => "set_rts",
        }
    }
}

fn builder(path: &Path, baudrate: u32) -> SerialPortBuilder {
    tokio_serial::new(path.to_string_lossy(), baudrate)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .exclusive(false)
}

/// Why a serial port (a tty, or the TCP end of a `socket://` URL) could not be used. The
/// texts are pyserial's (`could not open port ...`), so they read as upstream's errors do.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The tty could not be opened.
    #[error("could not open port {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: tokio_serial::Error,
    },
    /// The tty opened, but its line settings could not be applied.
    #[error("could not open port {}: {source}", path.display())]
    Settings { path: PathBuf, source: io::Error },
    /// The TCP end of a `socket://` URL did not accept a connection.
    #[error("could not open port {what}: {source}")]
    Socket { what: String, source: io::Error },
    /// The host of a `socket://` URL resolved to nothing.
    #[error("could not open port {what}: {host} has no addresses")]
    NoAddresses { what: String, host: String },
    /// `set_dtr` / `set_rts` failed on an open tty.
    #[error("cannot set {} on {}: {}", line.name(), path.display(), line_failure(source))]
    SetLine {
        line: Line,
        path: PathBuf,
        source: tokio_serial::Error,
    },
}

/// Whether a modem-line error is ENOTTY (nix 0.26 spells it "Not a typewriter").
fn is_enotty(e: &tokio_serial::Error) -> bool {
    e.description == "Not a typewriter" || e.description.contains("Inappropriate ioctl")
}

fn line_failure(e: &tokio_serial::Error) -> String {
    if is_enotty(e) {
        "Inappropriate ioctl for device (ENOTTY: the device has no modem control lines; \
         pseudo-terminals never have them)"
            .to_owned()
    } else {
        e.to_string()
    }
}

fn open_failed(path: &Path) -> impl FnOnce(tokio_serial::Error) -> PortError + '_ {
    move |source| PortError::Open {
        path: path.to_owned(),
        source,
    }
}

fn settings_failed(path: &Path) -> impl FnOnce(io::Error) -> PortError + '_ {
    move |source| PortError::Settings {
        path: path.to_owned(),
        source,
    }
}

/// Opens a tty for a `connect` stream (needs a tokio runtime).
pub fn open_async(
    path: &Path,
    baudrate: u32,
    disable_hupcl: bool,
) -> Result<(tokio_serial::SerialStream, Tuned), PortError> {
    let port =
        tokio_serial::SerialStream::open(&builder(path, baudrate)).map_err(open_failed(path))?;
    let tuned = tune(path, baudrate, disable_hupcl).map_err(settings_failed(path))?;
    Ok((port, tuned))
}

/// Opens a tty with a blocking handle (presence check, modem lines).
pub fn open_blocking(
    path: &Path,
    baudrate: u32,
    disable_hupcl: bool,
) -> Result<(Box<dyn SerialPort>, Tuned), PortError> {
    let port = builder(path, baudrate).open().map_err(open_failed(path))?;
    let tuned = tune(path, baudrate, disable_hupcl).map_err(settings_failed(path))?;
    Ok((port, tuned))
}

/// Sets one modem control line on a short-lived handle, as upstream's `set_dtr`/`set_rts`.
pub fn set_line(
    path: &Path,
    baudrate: u32,
    disable_hupcl: bool,
    line: Line,
    value: bool,
) -> Result<(), PortError> {
    let (mut port, _) = open_blocking(path, baudrate, disable_hupcl)?;
    let r = match line {
        Line::Dtr => port.write_data_terminal_ready(value),
        Line::Rts => port.write_request_to_send(value),
    };
    r.map_err(|source| PortError::SetLine {
        line,
        path: path.to_owned(),
        source,
    })
}

/// What [`tune`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuned {
    pub hupcl_cleared: bool,
}

/// See the module docs. Termios settings belong to the tty, not to a handle, so a second
/// handle opened here changes them for the port just opened.
pub fn tune(path: &Path, baudrate: u32, disable_hupcl: bool) -> io::Result<Tuned> {
    let rate = classic_rate(baudrate);
    if rate.is_none() && !disable_hupcl {
        return Ok(Tuned::default());
    }
    let f: File = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(path)?;
    let mut t = termios::tcgetattr(&f)?;
    if let Some(rate) = rate {
        termios::cfsetspeed(&mut t, rate)?;
    }
    let hupcl_cleared = disable_hupcl;
    if disable_hupcl {
        t.control_flags.remove(ControlFlags::HUPCL);
    }
    termios::tcsetattr(&f, SetArg::TCSANOW, &t)?;
    Ok(Tuned { hupcl_cleared })
}

/// The `Bxxx` constant of a rate, if it has one.
pub fn classic_rate(baudrate: u32) -> Option<BaudRate> {
    use BaudRate::*;
    let r = match baudrate {
        50 => B50,
        75 => B75,
        110 => B110,
        134 => B134,
        150 => B150,
        200 => B200,
        300 => B300,
        600 => B600,
        1200 => B1200,
        1800 => B1800,
        2400 => B2400,
        4800 => B4800,
        9600 => B9600,
        19200 => B19200,
        38400 => B38400,
        57600 => B57600,
        115200 => B115200,
        230400 => B230400,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        460800 => B460800,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        500000 => B500000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        576000 => B576000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        921600 => B921600,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        1000000 => B1000000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        1152000 => B1152000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        1500000 => B1500000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        2000000 => B2000000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        2500000 => B2500000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        3000000 => B3000000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        3500000 => B3500000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        4000000 => B4000000,
        _ => return None,
    };
    Some(r)
}
