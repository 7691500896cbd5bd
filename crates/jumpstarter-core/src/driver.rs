//! The driver model: what a driver is, from the session's point of view.
//!
//! A driver is a value with a client-class label (`jumpstarter.dev/client`), a table of exported
//! [`Method`]s of three kinds, and optional `reset`/`close` hooks. The session dispatches calls
//! by method name after checking the table; drivers never see gRPC types. Arguments and
//! results are JSON values, encoded on the wire by `jumpstarter_protocol::value`.
//!
//! # Writing a driver
//!
//! 1. Declare the interface once with [`macro@crate::interface`] (or use a family's, such as
//!    the power family's `Power`): a trait whose methods are the exported methods with typed
//!    arguments and results. It yields the method table, the dispatch and a typed client.
//! 2. Implement the trait for your driver and turn it into a [`Driver`] with
//!    [`crate::export!`], naming the client class (an upstream one such as
//!    `jumpstarter_driver_power.client.PowerClient` when the driver speaks that interface, so
//!    every client already knows it). Fail with a [`DriverError`] variant (its gRPC code is
//!    what upstream uses for the matching Python exception).
//! 3. Register a constructor under the `type:` string configs use
//!    ([`crate::Registry::register`], or `Families::driver` in a family); it gets the node's
//!    `config:` (parse it with serde via `ctx.config.parse()`, which reports file and line),
//!    its children and a logger, and may return children it creates itself
//!    ([`crate::registry::Built`]). Drivers are built per session.
//! 4. Test through a real session and client with [`crate::testing::serve`].
//!
//! Implementing [`Driver`] by hand remains possible (the session checks the method name, kind
//! and argument count against [`Driver::methods`] before calling), for drivers whose method
//! table is only known at run time. `examples/custom-driver` is a complete out-of-tree family,
//! including a custom exporter binary (`jumpstarter_cli::main_with_drivers`) with its own `j`
//! command. Drivers in other languages run out of process: see `docs/driver-hosts.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

pub use serde_json::Value;

pub use crate::resource::CallContext;

/// The three kinds of exported methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// `DriverCall`: JSON arguments in, one JSON value out.
    Unary,
    /// `StreamingDriverCall`: JSON arguments in, a stream of JSON values out.
    Streaming,
    /// `RouterService.Stream` with `kind: driver`: a bidirectional byte stream.
    Stream,
}

impl MethodKind {
    /// Upstream's name for the export marker of this kind (used in NOT_FOUND messages).
    pub fn marker(self) -> &'static str {
        match self {
            MethodKind::Unary => "marker_drivercall",
            MethodKind::Streaming => "marker_streamingdrivercall",
            MethodKind::Stream => "marker_streamcall",
        }
    }
}

/// A positional parameter of an exported method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub required: bool,
}

impl Param {
    pub const fn required(name: &'static str) -> Self {
        Param {
            name,
            required: true,
        }
    }
    pub const fn optional(name: &'static str) -> Self {
        Param {
            name,
            required: false,
        }
    }
}

/// One exported method: name, kind and positional parameters. The session checks argument
/// counts against `params` (as Python would raise TypeError) before the driver sees a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub name: &'static str,
    pub kind: MethodKind,
    pub params: &'static [Param],
    /// Accepts any number of extra positional arguments after `params`.
    pub variadic: bool,
    /// One-line help, used by generic clients when the config gives no description.
    pub help: &'static str,
}

impl Method {
    pub const fn unary(name: &'static str) -> Self {
        Method {
            name,
            kind: MethodKind::Unary,
            params: &[],
            variadic: false,
            help: "",
        }
    }
    pub const fn streaming(name: &'static str) -> Self {
        Method {
            name,
            kind: MethodKind::Streaming,
            params: &[],
            variadic: false,
            help: "",
        }
    }
    pub const fn stream(name: &'static str) -> Self {
        Method {
            name,
            kind: MethodKind::Stream,
            params: &[],
            variadic: false,
            help: "",
        }
    }
    pub const fn params(mut self, params: &'static [Param]) -> Self {
        self.params = params;
        self
    }
    pub const fn variadic(mut self) -> Self {
        self.variadic = true;
        self
    }
    pub const fn help(mut self, help: &'static str) -> Self {
        self.help = help;
        self
    }

    /// Checks a call's argument count the way Python checks a call of a bound method.
    pub fn check_arity(&self, class: &str, given: usize) -> Result<(), DriverError> {
        let max = self.params.len();
        if given > max && !self.variadic {
            let (takes, plural) = (max + 1, if max + 1 == 1 { "" } else { "s" });
            return Err(DriverError::Other(format!(
                "{class}.{}() takes {takes} positional argument{plural} but {} were given",
                self.name,
                given + 1
            )));
        }
        let missing: Vec<&str> = self
            .params
            .iter()
            .skip(given)
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|n| format!("'{n}'")).collect();
            let list = match names.len() {
                1 => names[0].clone(),
                n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
            };
            return Err(DriverError::Other(format!(
                "{class}.{}() missing {} required positional argument{}: {list}",
                self.name,
                missing.len(),
                if missing.len() == 1 { "" } else { "s" }
            )));
        }
        Ok(())
    }
}

/// An error raised by a driver. Each variant maps to the gRPC status upstream uses for the
/// corresponding Python exception; the message is what the client shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// ValueError: INVALID_ARGUMENT.
    #[error("{0}")]
    InvalidArgument(String),
    /// NotImplementedError: UNIMPLEMENTED.
    #[error("{0}")]
    NotImplemented(String),
    /// TimeoutError: DEADLINE_EXCEEDED.
    #[error("{0}")]
    Timeout(String),
    /// Unknown method or wrong method kind: NOT_FOUND.
    #[error("{0}")]
    NotFound(String),
    /// The driver's backend is unreachable (a driver host died, a device vanished): UNAVAILABLE.
    #[error("{0}")]
    Unavailable(String),
    /// The session is not in a state that allows the call: FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Any other failure: UNKNOWN.
    #[error("{0}")]
    Other(String),
}

impl DriverError {
    pub fn invalid(msg: impl fmt::Display) -> Self {
        DriverError::InvalidArgument(msg.to_string())
    }
    pub fn other(msg: impl fmt::Display) -> Self {
        DriverError::Other(msg.to_string())
    }
    pub fn method_not_found(method: &str) -> Self {
        DriverError::NotFound(format!("method {method} not found on driver"))
    }
    pub fn wrong_kind(method: &str, wanted: MethodKind) -> Self {
        DriverError::NotFound(format!(
            "method {method} missing marker {}",
            wanted.marker()
        ))
    }
    /// An I/O error from the driver's backend, mapped as upstream 0.9.0 does (UNKNOWN), with
    /// timeouts kept as DEADLINE_EXCEEDED.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::TimedOut {
            DriverError::Timeout(format!("{context}: {err}"))
        } else {
            DriverError::Other(format!("{context}: {err}"))
        }
    }

    pub fn code(&self) -> tonic::Code {
        match self {
            DriverError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            DriverError::NotImplemented(_) => tonic::Code::Unimplemented,
            DriverError::Timeout(_) => tonic::Code::DeadlineExceeded,
            DriverError::NotFound(_) => tonic::Code::NotFound,
            DriverError::Unavailable(_) => tonic::Code::Unavailable,
            DriverError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            DriverError::Other(_) => tonic::Code::Unknown,
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}

/// Positional arguments of a call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(pub Vec<Value>);

impl Args {
    pub fn new(values: Vec<Value>) -> Self {
        Args(values)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn raw(&self, i: usize) -> Option<&Value> {
        self.0.get(i)
    }

    /// Argument `i` as `T`. Absent (or null) arguments are an error; numbers that arrive as
    /// whole doubles are accepted where integers are wanted.
    pub fn get<T: DeserializeOwned>(&self, i: usize, name: &str) -> Result<T, DriverError> {
        match self.0.get(i) {
            Some(v) if !v.is_null() => serde_json::from_value(v.clone())
                .map_err(|e| DriverError::invalid(format!("argument {name}: {e}"))),
            _ => Err(DriverError::invalid(format!("argument {name} is required"))),
        }
    }

    /// Argument `i` as `T`, or `default` when it was not given (or is null).
    pub fn get_or<T: DeserializeOwned>(
        &self,
        i: usize,
        name: &str,
        default: T,
    ) -> Result<T, DriverError> {
        match self.0.get(i) {
            Some(v) if !v.is_null() => serde_json::from_value(v.clone())
                .map_err(|e| DriverError::invalid(format!("argument {name}: {e}"))),
            _ => Ok(default),
        }
    }

    /// All arguments from `i` on (for variadic methods).
    pub fn rest(&self, i: usize) -> &[Value] {
        self.0.get(i..).unwrap_or(&[])
    }
}

/// A bidirectional byte stream with half-close: the one currency of every stream in
/// Jumpstarter (driver streams, resources, router tunnels, forwarded sockets).
///
/// Frame boundaries: bridges never coalesce. Each read becomes one DATA frame and each DATA
/// frame is written with one write, so datagram-backed streams (UDP) keep one frame per
/// datagram.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A boxed [`ByteStream`].
pub type BoxStream = Box<dyn ByteStream>;

/// The result stream of a server-streaming method.
pub type ValueStream = Pin<Box<dyn Stream<Item = Result<Value, DriverError>> + Send>>;

/// A driver. Implementations are `Send + Sync` and handle concurrent calls themselves
/// (upstream runs calls to one driver concurrently).
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The `jumpstarter.dev/client` label: which client class drives this driver.
    fn client(&self) -> &str;

    /// Exported methods.
    fn methods(&self) -> &[Method] {
        &[]
    }

    /// Labels this driver adds to its report (upstream's `extra_labels`).
    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Method descriptions this driver adds to its report (the Shell driver describes its
    /// configured methods). As upstream, these win over the node's `methods_description`.
    fn methods_description(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// A unary method. Only called for names the method table lists as [`MethodKind::Unary`],
    /// with an argument count the table accepts. `ctx` opens resource handles.
    async fn call(
        &self,
        method: &str,
        args: Args,
        ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        let _ = (args, ctx);
        Err(DriverError::method_not_found(method))
    }

    /// A server-streaming method (same guarantees as [`Driver::call`]).
    fn streaming_call(
        self: Arc<Self>,
        method: &str,
        args: Args,
        ctx: CallContext,
    ) -> Result<ValueStream, DriverError> {
        let _ = (args, ctx);
        Err(DriverError::method_not_found(method))
    }

    /// Opens a byte-stream method. The stream is open (connected) when this returns.
    async fn open_stream(&self, method: &str) -> Result<BoxStream, DriverError> {
        Err(DriverError::method_not_found(method))
    }

    /// Called when a session starts, before any call.
    async fn reset(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Called once when the session ends.
    async fn close(&self) {}
}

impl fmt::Debug for dyn Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("client", &self.client())
            .finish()
    }
}

/// Finds a method in a driver's table and checks its kind, with upstream's NOT_FOUND texts.
pub fn lookup(driver: &dyn Driver, name: &str, kind: MethodKind) -> Result<Method, DriverError> {
    match driver.methods().iter().find(|m| m.name == name) {
        None => Err(DriverError::method_not_found(name)),
        Some(m) if m.kind != kind => Err(DriverError::wrong_kind(name, kind)),
        Some(m) => Ok(*m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Method = Method::unary("ret").params(&[Param::required("x"), Param::optional("y")]);

    #[test]
    fn arity_messages_match_python() {
        assert!(M.check_arity("Probe", 1).is_ok());
        assert!(M.check_arity("Probe", 2).is_ok());
        assert_eq!(
            M.check_arity("Probe", 3).unwrap_err().to_string(),
            "Probe.ret() takes 3 positional arguments but 4 were given"
        );
        assert_eq!(
            M.check_arity("Probe", 0).unwrap_err().to_string(),
            "Probe.ret() missing 1 required positional argument: 'x'"
        );
        const TWO: Method =
            Method::unary("f").params(&[Param::required("a"), Param::required("b")]);
        let two = TWO;
        assert_eq!(
            two.check_arity("C", 0).unwrap_err().to_string(),
            "C.f() missing 2 required positional arguments: 'a' and 'b'"
        );
        let none = Method::unary("on");
        assert_eq!(
            none.check_arity("MockPower", 1).unwrap_err().to_string(),
            "MockPower.on() takes 1 positional argument but 2 were given"
        );
        assert!(Method::unary("v").variadic().check_arity("C", 9).is_ok());
    }

    #[test]
    fn args_accept_whole_doubles_for_integers() {
        let a = Args::new(vec![
            jumpstarter_protocol::value::json_number(3.0),
            Value::Null,
        ]);
        assert_eq!(a.get::<u32>(0, "n").unwrap(), 3);
        assert_eq!(a.get_or::<u32>(1, "m", 7).unwrap(), 7);
        assert_eq!(a.get_or::<u32>(2, "k", 9).unwrap(), 9);
        let bad = Args::new(vec![Value::String("x".into())]);
        assert!(matches!(
            bad.get::<u32>(0, "n"),
            Err(DriverError::InvalidArgument(_))
        ));
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            DriverError::invalid("x").code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            DriverError::method_not_found("m").to_string(),
            "method m not found on driver"
        );
        assert_eq!(
            DriverError::wrong_kind("m", MethodKind::Streaming).to_string(),
            "method m missing marker marker_streamingdrivercall"
        );
    }
}
