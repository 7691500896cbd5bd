//! Driver interfaces declared once: `#[interface]` and [`export!`](crate::export).
//!
//! An interface is a trait whose methods are the exported methods, written as ordinary Rust:
//!
//! ```
//! use jumpstarter_core::interface::Items;
//! use jumpstarter_core::{DriverError, Logger};
//!
//! #[jumpstarter_core::interface(client = LampClient)]
//! pub trait Lamp {
//!     /// Switch the lamp on
//!     async fn on(&self) -> Result<(), DriverError>;
//!     /// Set the brightness (0-100, default 100)
//!     async fn dim(&self, #[default(100)] percent: u8) -> Result<u8, DriverError>;
//!     /// Readings, one per item
//!     #[streaming]
//!     fn watch(self: std::sync::Arc<Self>, count: usize) -> Result<Items<f64>, DriverError>;
//! }
//!
//! struct MockLamp(Logger);
//!
//! #[jumpstarter_core::async_trait]
//! impl Lamp for MockLamp {
//!     async fn on(&self) -> Result<(), DriverError> {
//!         self.0.info("on");
//!         Ok(())
//!     }
//!     async fn dim(&self, percent: u8) -> Result<u8, DriverError> {
//!         Ok(percent.min(100))
//!     }
//!     fn watch(self: std::sync::Arc<Self>, count: usize) -> Result<Items<f64>, DriverError> {
//!         Ok(Box::pin(futures::stream::iter((0..count).map(|i| Ok(i as f64)))))
//!     }
//! }
//!
//! jumpstarter_core::export! {
//!     impl MockLamp {
//!         client = "mylab.client.LampClient";
//!         interfaces = [Lamp];
//!     }
//! }
//! ```
//!
//! The attribute yields, from that one declaration:
//! * the method table (`Method` values: name, kind, parameters with `required`/`optional`,
//!   help from the first paragraph of the doc comment), which the session checks every call
//!   against (Python's TypeError texts for wrong argument counts);
//! * the dispatch from a method name and JSON arguments to the typed method: each argument is
//!   decoded with serde (`argument NAME: ...` as ValueError / INVALID_ARGUMENT when it does
//!   not fit), results are encoded with serde;
//! * with `client = Name`, a typed client struct (`Name::new(DriverClient)`) with one `async`
//!   method per exported method. Optional parameters are `Option<T>` there, and are left out
//!   of the call when `None` (as a Python caller leaves out a keyword), so one client speaks
//!   to drivers whose signatures differ only in optional parameters.
//!
//! [`export!`](crate::export) then implements [`Driver`](crate::Driver) for a type from one or
//! more interfaces (their tables concatenated, calls routed to the interface that lists the
//! method), plus any other `Driver` items (`labels`, `reset`, `close`, ...). Its `client = ...`
//! is the client-class label, or a function of the driver (`Self::label`) for a type whose
//! instances have different client classes ([`ClientLabel`]).
//!
//! # The rules
//! * Unary methods are `async fn(&self, ..) -> Result<T, DriverError>`; `T: Serialize`.
//! * `#[streaming]` methods are `fn(self: Arc<Self>, ..) -> Result<Items<T>, DriverError>`.
//! * `#[stream]` methods (byte streams) are `async fn(&self) -> Result<BoxStream, DriverError>`.
//! * A first parameter of type `&CallContext` (`CallContext` for streaming methods) is the
//!   call's context (resource handles), not a wire argument.
//! * `#[default(expr)]` (or `#[default]` for `Default::default()`) makes a parameter optional;
//!   `Option<T>` parameters are optional with `None`; `#[rest] name: Vec<T>` takes every
//!   further positional argument.
//! * `#[raw] name: Value` takes a required argument as sent, null included, without decoding
//!   (a resource handle the method opens itself, reporting a bad one in its own words).
//! * `#[nullable]` on a required parameter passes a null argument to serde instead of refusing
//!   it (`argument NAME is required`), so a `Value` parameter sees `Value::Null`: for drivers
//!   that answer a null with their own message.
//! * `#[wire = "name"]` exports a method under another name; `#[client = "name"]` names the
//!   typed client's method (when a hand-written client method wraps the raw one).

use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::ClientError;
use crate::driver::{DriverError, Method, Value, ValueStream};

/// The items of a streaming method, as the driver returns them.
pub type Items<T> = Pin<Box<dyn Stream<Item = Result<T, DriverError>> + Send>>;

/// The items of a streaming method, as the typed client yields them.
pub type ClientItems<T> = Pin<Box<dyn Stream<Item = Result<T, ClientError>> + Send>>;

/// Whether `table` lists `method`.
#[inline]
pub fn owns(table: &[Method], method: &str) -> bool {
    table.iter().any(|m| m.name == method)
}

fn decode_arg<T: DeserializeOwned>(v: Value, name: &str) -> Result<T, DriverError> {
    serde_json::from_value(v).map_err(|e| DriverError::invalid(format!("argument {name}: {e}")))
}

/// A required argument (absent or null: `argument NAME is required`).
pub fn required<T: DeserializeOwned>(v: Option<Value>, name: &str) -> Result<T, DriverError> {
    match v {
        Some(v) if !v.is_null() => decode_arg(v, name),
        _ => Err(DriverError::invalid(format!("argument {name} is required"))),
    }
}

/// A required argument that may be null (`#[nullable]`): absent is `argument NAME is
/// required`, null is decoded like any other value.
pub fn nullable<T: DeserializeOwned>(v: Option<Value>, name: &str) -> Result<T, DriverError> {
    match v {
        Some(v) => decode_arg(v, name),
        None => Err(DriverError::invalid(format!("argument {name} is required"))),
    }
}

/// An optional argument: `default()` when absent or null.
pub fn optional<T: DeserializeOwned>(
    v: Option<Value>,
    name: &str,
    default: impl FnOnce() -> T,
) -> Result<T, DriverError> {
    match v {
        Some(v) if !v.is_null() => decode_arg(v, name),
        _ => Ok(default()),
    }
}

/// A `#[raw]` argument: as sent, null when absent.
pub fn raw(v: Option<Value>) -> Value {
    v.unwrap_or(Value::Null)
}

/// What `client = ...` in [`export!`](crate::export) accepts: the client-class label
/// (`&'static str`), or a function of the driver returning it (`fn(&D) -> &str`, e.g. a method
/// `Self::client_label`) for a type whose instances have different client classes.
pub trait ClientLabel<D: ?Sized> {
    fn client_label(self, driver: &D) -> &str;
}

impl<D: ?Sized> ClientLabel<D> for &'static str {
    fn client_label(self, _driver: &D) -> &str {
        self
    }
}

impl<D: ?Sized, F: Fn(&D) -> &str> ClientLabel<D> for F {
    fn client_label(self, driver: &D) -> &str {
        self(driver)
    }
}

/// Every remaining argument, each decoded as an item of `C`.
pub fn rest<C, T>(args: &mut impl Iterator<Item = Value>, name: &str) -> Result<C, DriverError>
where
    C: FromIterator<T>,
    T: DeserializeOwned,
{
    args.map(|v| decode_arg(v, name)).collect()
}

/// A result as the wire carries it.
pub fn encode<T: Serialize>(out: T) -> Result<Value, DriverError> {
    serde_json::to_value(out).map_err(|e| DriverError::other(format!("cannot encode result: {e}")))
}

/// A streaming method's items as the wire carries them.
pub fn encode_items<T: Serialize + 'static>(items: Items<T>) -> ValueStream {
    Box::pin(items.map(|item| item.and_then(encode)))
}

/// An argument for the wire (client side).
pub fn to_arg<T: Serialize>(v: T) -> Result<Value, ClientError> {
    serde_json::to_value(v).map_err(|e| ClientError::shape("argument", e))
}

/// An optional argument for the wire: `None` is sent as null, and trailing nulls are then
/// left out ([`trim_nulls`]).
pub fn push_optional<T: Serialize>(args: &mut Vec<Value>, v: Option<T>) -> Result<(), ClientError> {
    args.push(match v {
        Some(v) => to_arg(v)?,
        None => Value::Null,
    });
    Ok(())
}

/// Drops trailing nulls beyond the `required` leading arguments.
pub fn trim_nulls(args: &mut Vec<Value>, required: usize) {
    while args.len() > required && args.last().is_some_and(Value::is_null) {
        args.pop();
    }
}

/// A unary result as the typed client returns it.
pub fn decode<T: DeserializeOwned>(method: &str, v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::shape(method, e))
}

/// A streaming method's items as the typed client yields them.
pub fn decode_items<T: DeserializeOwned + Send + 'static>(
    method: &str,
    items: impl Stream<Item = Result<Value, ClientError>> + Send + 'static,
) -> ClientItems<T> {
    let method = method.to_owned();
    Box::pin(items.map(move |item| decode(&method, item?)))
}

/// Implements [`Driver`](crate::Driver) for a type from the interfaces it implements.
///
/// ```ignore
/// jumpstarter_core::export! {
///     impl MockPower {
///         client = POWER_CLIENT;           // the `jumpstarter.dev/client` label (or a
///                                          // `fn(&Self) -> &str`: see `ClientLabel`)
///         interfaces = [Power, PowerState]; // tables concatenated in this order
///         // optional: any other `Driver` items, e.g.
///         async fn reset(&self) -> Result<(), DriverError> { Ok(()) }
///     }
/// }
/// ```
#[macro_export]
macro_rules! export {
    (impl $ty:ty { client = $client:expr; interfaces = [$($iface:path),+ $(,)?]; $($extra:tt)* }) => {
        #[$crate::async_trait]
        impl $crate::Driver for $ty {
            fn client(&self) -> &str {
                $crate::interface::ClientLabel::client_label($client, self)
            }

            fn methods(&self) -> &[$crate::Method] {
                $crate::__export_methods!($ty; $($iface),+)
            }

            async fn call(
                &self,
                method: &str,
                args: $crate::Args,
                ctx: &$crate::CallContext,
            ) -> ::core::result::Result<$crate::Value, $crate::DriverError> {
                $(
                    if $crate::interface::owns(<$ty as $iface>::__METHODS, method) {
                        return <$ty as $iface>::__call(self, method, args, ctx).await;
                    }
                )+
                ::core::result::Result::Err($crate::DriverError::method_not_found(method))
            }

            fn streaming_call(
                self: ::std::sync::Arc<Self>,
                method: &str,
                args: $crate::Args,
                ctx: $crate::CallContext,
            ) -> ::core::result::Result<$crate::ValueStream, $crate::DriverError> {
                $(
                    if $crate::interface::owns(<$ty as $iface>::__METHODS, method) {
                        return <$ty as $iface>::__streaming(self, method, args, ctx);
                    }
                )+
                ::core::result::Result::Err($crate::DriverError::method_not_found(method))
            }

            async fn open_stream(
                &self,
                method: &str,
            ) -> ::core::result::Result<$crate::BoxStream, $crate::DriverError> {
                $(
                    if $crate::interface::owns(<$ty as $iface>::__METHODS, method) {
                        return <$ty as $iface>::__open(self, method).await;
                    }
                )+
                ::core::result::Result::Err($crate::DriverError::method_not_found(method))
            }

            $($extra)*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_methods {
    ($ty:ty; $one:path) => {
        <$ty as $one>::__METHODS
    };
    ($ty:ty; $($iface:path),+) => {{
        static ALL: ::std::sync::LazyLock<::std::vec::Vec<$crate::Method>> =
            ::std::sync::LazyLock::new(|| {
                let mut all = ::std::vec::Vec::new();
                $( all.extend_from_slice(<$ty as $iface>::__METHODS); )+
                all
            });
        &ALL
    }};
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::driver::{BoxStream, MethodKind};
    use crate::testing::serve;
    use crate::{CallContext, DriverTree, Instance};

    /// Every shape the attribute accepts, in one interface.
    #[crate::interface(client = ProbeClient, crate = crate)]
    pub trait Probe {
        /// Add one
        ///
        /// More text that is not the help.
        async fn bump(&self) -> Result<u32, DriverError>;
        /// Join words
        async fn join(
            &self,
            first: String,
            #[default(String::from("-"))] sep: String,
            #[rest] more: Vec<String>,
        ) -> Result<String, DriverError>;
        async fn maybe(&self, n: Option<i64>) -> Result<Option<i64>, DriverError>;
        async fn with_ctx(&self, ctx: &CallContext, tag: String) -> Result<(), DriverError>;
        #[wire = "type"]
        #[client = "kind"]
        async fn kind_(&self) -> Result<String, DriverError>;
        #[streaming]
        fn count(self: Arc<Self>, #[default(2)] n: u32) -> Result<Items<u32>, DriverError>;
        #[stream]
        async fn connect(&self) -> Result<BoxStream, DriverError>;
    }

    /// A second interface on the same driver.
    #[crate::interface(client = ExtraClient, crate = crate)]
    pub trait Extra {
        async fn extra(&self) -> Result<bool, DriverError>;
    }

    /// `#[nullable]`: required in the table, null handed to the method.
    #[crate::interface(client = NullsClient, crate = crate)]
    pub trait Nulls {
        async fn kind_of(
            &self,
            #[nullable] v: Value,
            #[nullable] n: Option<u32>,
        ) -> Result<String, DriverError>;
    }

    struct N;

    #[crate::async_trait]
    impl Nulls for N {
        async fn kind_of(&self, v: Value, n: Option<u32>) -> Result<String, DriverError> {
            Ok(format!(
                "{} {n:?}",
                if v.is_null() { "null" } else { "value" }
            ))
        }
    }

    crate::export! {
        impl N {
            client = "test.NullsClient";
            interfaces = [Nulls];
        }
    }

    #[tokio::test]
    async fn nullable_parameters_are_required_but_take_null() {
        let t = <N as Nulls>::__METHODS;
        assert!(t[0].params.iter().all(|p| p.required));
        let tree = DriverTree::composite(vec![("n", Instance::new(Arc::new(N), "t.N"))]);
        let served = serve(tree).await.unwrap();
        let node = served.client.get("n").unwrap().clone();
        let n = NullsClient::new(node.clone());
        assert_eq!(n.kind_of(Value::Null, None).await.unwrap(), "null None");
        assert_eq!(
            n.kind_of(Value::from(1), Some(2)).await.unwrap(),
            "value Some(2)"
        );
        let err = node.call("kind_of", vec![Value::Null]).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with("N.kind_of() missing 1 required positional argument: 'n'"),
            "{err}"
        );
        let err = node
            .call("kind_of", vec![Value::Null, Value::from("x")])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("argument n: invalid type"),
            "{err}"
        );
        served.shutdown().await;
    }

    #[derive(Default)]
    struct P(AtomicU32);

    #[crate::async_trait]
    impl Probe for P {
        async fn bump(&self) -> Result<u32, DriverError> {
            Ok(self.0.fetch_add(1, Ordering::SeqCst) + 1)
        }
        async fn join(
            &self,
            first: String,
            sep: String,
            more: Vec<String>,
        ) -> Result<String, DriverError> {
            let mut all = vec![first];
            all.extend(more);
            Ok(all.join(&sep))
        }
        async fn maybe(&self, n: Option<i64>) -> Result<Option<i64>, DriverError> {
            Ok(n.map(|n| n * 2))
        }
        async fn with_ctx(&self, _ctx: &CallContext, tag: String) -> Result<(), DriverError> {
            if tag == "bad" {
                return Err(DriverError::invalid("bad tag"));
            }
            Ok(())
        }
        async fn kind_(&self) -> Result<String, DriverError> {
            Ok("probe".into())
        }
        fn count(self: Arc<Self>, n: u32) -> Result<Items<u32>, DriverError> {
            Ok(Box::pin(futures::stream::iter((0..n).map(Ok))))
        }
        async fn connect(&self) -> Result<BoxStream, DriverError> {
            let (a, b) = tokio::io::duplex(64);
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(b);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
            Ok(Box::new(a))
        }
    }

    #[crate::async_trait]
    impl Extra for P {
        async fn extra(&self) -> Result<bool, DriverError> {
            Ok(true)
        }
    }

    crate::export! {
        impl P {
            client = "test.ProbeClient";
            interfaces = [Probe, Extra];
            async fn reset(&self) -> Result<(), DriverError> {
                self.0.store(100, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    #[test]
    fn the_table_comes_from_the_declaration() {
        let t = <P as Probe>::__METHODS;
        let names: Vec<&str> = t.iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "bump", "join", "maybe", "with_ctx", "type", "count", "connect"
            ]
        );
        assert_eq!(t[0].help, "Add one");
        assert_eq!(t[1].params.len(), 2);
        assert!(t[1].params[0].required && !t[1].params[1].required && t[1].variadic);
        assert!(!t[2].params[0].required);
        assert_eq!(t[3].params.len(), 1, "the context is not a wire argument");
        assert_eq!(t[5].kind, MethodKind::Streaming);
        assert_eq!(t[6].kind, MethodKind::Stream);
        let p = P::default();
        let all = crate::Driver::methods(&p);
        assert_eq!(all.len(), 8);
        assert_eq!(all[7].name, "extra");
    }

    #[tokio::test]
    async fn calls_reach_the_typed_methods_through_a_session() {
        let tree = DriverTree::composite(vec![("p", Instance::new(Arc::new(P::default()), "t.P"))]);
        let served = serve(tree).await.unwrap();
        let node = served.client.get("p").unwrap().clone();
        let p = ProbeClient::new(node.clone());
        assert_eq!(p.bump().await.unwrap(), 101, "reset ran at session start");
        assert_eq!(p.join("a".into(), None, vec![]).await.unwrap(), "a");
        assert_eq!(
            p.join("a".into(), Some("+".into()), vec!["b".into(), "c".into()])
                .await
                .unwrap(),
            "a+b+c"
        );
        assert_eq!(p.maybe(Some(4)).await.unwrap(), Some(8));
        assert_eq!(p.maybe(None).await.unwrap(), None);
        p.with_ctx("ok".into()).await.unwrap();
        let err = p.with_ctx("bad".into()).await.unwrap_err();
        assert!(err.as_call().unwrap().is_invalid_argument());
        assert_eq!(p.kind().await.unwrap(), "probe");
        let items: Vec<u32> = p
            .count(Some(3))
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(items, [0, 1, 2]);
        let items: Vec<u32> = p
            .count(None)
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(items, [0, 1]);
        assert!(ExtraClient::new(node.clone()).extra().await.unwrap());

        // Argument decoding and arity keep the texts of hand-written drivers.
        let err = node.call("join", vec![]).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with("P.join() missing 1 required positional argument: 'first'"),
            "{err}"
        );
        let err = node.call("join", vec![Value::from(3)]).await.unwrap_err();
        assert!(err.as_call().unwrap().is_invalid_argument(), "{err}");
        assert!(
            err.to_string().contains("argument first: invalid type"),
            "{err}"
        );
        let err = node
            .call("maybe", vec![Value::from(1), Value::from(2)])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("P.maybe() takes 2 positional arguments but 3 were given"),
            "{err}"
        );
        let err = node.call("count", vec![]).await.unwrap_err();
        assert!(
            err.to_string().contains("missing marker marker_drivercall"),
            "{err}"
        );

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = p.connect().await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(s);
        served.shutdown().await;
    }
    /// `#[raw]` arguments and a client label that is a function of the driver.
    #[crate::interface(client = RawClient, crate = crate)]
    pub trait Raw {
        async fn echo(&self, #[raw] v: Value, n: Option<u32>) -> Result<Value, DriverError>;
    }

    struct R(&'static str);

    impl R {
        fn label(&self) -> &str {
            self.0
        }
    }

    #[crate::async_trait]
    impl Raw for R {
        async fn echo(&self, v: Value, n: Option<u32>) -> Result<Value, DriverError> {
            Ok(serde_json::json!([v, n]))
        }
    }

    crate::export! {
        impl R {
            client = R::label;
            interfaces = [Raw];
        }
    }

    #[tokio::test]
    async fn raw_arguments_and_per_instance_client_labels() {
        let t = <R as Raw>::__METHODS;
        assert!(t[0].params[0].required && !t[0].params[1].required);
        assert_eq!(crate::Driver::client(&R("a.A")), "a.A");
        assert_eq!(crate::Driver::client(&R("b.B")), "b.B");
        let tree = DriverTree::composite(vec![("r", Instance::new(Arc::new(R("x.X")), "t.R"))]);
        let served = serve(tree).await.unwrap();
        let node = served.client.get("r").unwrap().clone();
        assert_eq!(node.client_class(), "x.X");
        let r = RawClient::new(node.clone());
        // Null and any shape arrive as sent.
        assert_eq!(
            r.echo(Value::Null, None).await.unwrap(),
            serde_json::json!([null, null])
        );
        assert_eq!(
            r.echo(serde_json::json!({"k": 1}), Some(2)).await.unwrap(),
            serde_json::json!([{"k": 1}, 2])
        );
        // Still a required parameter.
        let err = node.call("echo", vec![]).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with("R.echo() missing 1 required positional argument: 'v'"),
            "{err}"
        );
        served.shutdown().await;
    }
}
