//! Bad input reaching a session: each gets a clear error with upstream's status code, and the
//! session keeps serving other calls.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use jumpstarter_core::client::Code;
use jumpstarter_core::driver::ValueStream;
use jumpstarter_core::testing::serve;
use jumpstarter_core::transport::{H2Channel, Target};
use jumpstarter_core::{
    Args, BoxStream, CallContext, Client, Driver, DriverError, DriverTree, Instance, Method, Param,
    Value,
};
use jumpstarter_protocol::v1::ExporterStatus;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT: &str = "probe_driver.ProbeClient";

const METHODS: &[Method] = &[
    Method::unary("ret").params(&[Param::required("x")]),
    Method::unary("double").params(&[Param::required("n")]),
    Method::unary("raw_bytes"),
    Method::unary("fail").params(&[Param::required("kind")]),
    Method::streaming("count").params(&[Param::required("n")]),
    Method::stream("connect"),
];

/// A driver with typed arguments and every error kind.
struct Probe;

#[async_trait]
impl Driver for Probe {
    fn client(&self) -> &str {
        CLIENT
    }
    fn methods(&self) -> &[Method] {
        METHODS
    }
    async fn call(
        &self,
        method: &str,
        args: Args,
        _ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        match method {
            "ret" => Ok(args.raw(0).cloned().unwrap_or(Value::Null)),
            "double" => Ok(Value::from(args.get::<u32>(0, "n")? * 2)),
            "raw_bytes" => {
                let v = jumpstarter_protocol::value::bytes_value(b"\xff\xfe")
                    .map_err(DriverError::invalid)?;
                Ok(jumpstarter_protocol::value::from_proto(&v))
            }
            "fail" => Err(match args.get::<String>(0, "kind")?.as_str() {
                "value" => DriverError::InvalidArgument("bad value".into()),
                "timeout" => DriverError::Timeout("too slow".into()),
                "unimplemented" => DriverError::NotImplemented("not here".into()),
                _ => DriverError::Other("it broke".into()),
            }),
            other => Err(DriverError::method_not_found(other)),
        }
    }
    fn streaming_call(
        self: Arc<Self>,
        _method: &str,
        args: Args,
        _ctx: CallContext,
    ) -> Result<ValueStream, DriverError> {
        let n: u32 = args.get(0, "n")?;
        let items = (0..n)
            .map(|i| Ok(Value::from(i)))
            .chain(std::iter::once(Err(DriverError::InvalidArgument(
                "stopped".into(),
            ))));
        Ok(Box::pin(futures::stream::iter(items)))
    }
    async fn open_stream(&self, _method: &str) -> Result<BoxStream, DriverError> {
        let (a, b) = tokio::io::duplex(1 << 16);
        // Echo everything from the far end back.
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(b);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
        Ok(Box::new(a))
    }
}

fn tree() -> DriverTree {
    DriverTree::composite(vec![(
        "probe",
        Instance::new(Arc::new(Probe), "probe_driver.Probe"),
    )])
}

fn code(e: &jumpstarter_core::ClientError) -> Code {
    e.as_call().unwrap().code
}

async fn still_serving(client: &Client) {
    let probe = client.get("probe").unwrap();
    assert_eq!(
        probe.call("ret", vec![Value::from(7)]).await.unwrap(),
        Value::from(7)
    );
}

#[tokio::test]
async fn wrong_argument_types_and_counts() {
    let served = serve(tree()).await.unwrap();
    let probe = served.client.get("probe").unwrap();
    assert_eq!(
        probe.call("double", vec![Value::from(21)]).await.unwrap(),
        Value::from(42)
    );
    let e = probe
        .call("double", vec![Value::from("x")])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    assert!(
        e.to_string()
            .contains("argument n: invalid type: string \"x\""),
        "{e}"
    );
    let e = probe
        .call("double", vec![Value::from(2.5)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    let e = probe.call("double", vec![]).await.unwrap_err();
    assert_eq!(code(&e), Code::Unknown);
    assert!(
        e.to_string()
            .ends_with("Probe.double() missing 1 required positional argument: 'n'"),
        "{e}"
    );
    still_serving(&served.client).await;
    served.shutdown().await;
}

#[tokio::test]
async fn non_utf8_bytes_are_an_invalid_argument() {
    let served = serve(tree()).await.unwrap();
    let e = served
        .client
        .get("probe")
        .unwrap()
        .call("raw_bytes", vec![])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    assert!(
        e.to_string()
            .ends_with("'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
        "{e}"
    );
    still_serving(&served.client).await;
    served.shutdown().await;
}

#[tokio::test]
async fn driver_errors_map_to_upstream_codes() {
    let served = serve(tree()).await.unwrap();
    let probe = served.client.get("probe").unwrap();
    for (kind, want) in [
        ("value", Code::InvalidArgument),
        ("timeout", Code::DeadlineExceeded),
        ("unimplemented", Code::Unimplemented),
        ("other", Code::Unknown),
    ] {
        let e = probe
            .call("fail", vec![Value::from(kind)])
            .await
            .unwrap_err();
        assert_eq!(code(&e), want, "{kind}");
    }
    // A streaming call delivers its items, then ends with the mapped error.
    let mut items = Box::pin(
        probe
            .streaming_call("count", vec![Value::from(2)])
            .await
            .unwrap(),
    );
    assert_eq!(items.next().await.unwrap().unwrap(), Value::from(0));
    assert_eq!(items.next().await.unwrap().unwrap(), Value::from(1));
    assert_eq!(
        code(&items.next().await.unwrap().unwrap_err()),
        Code::InvalidArgument
    );
    assert!(items.next().await.is_none());
    served.shutdown().await;
}

#[tokio::test]
async fn garbage_on_the_socket_ends_that_connection_only() {
    let served = serve(tree()).await.unwrap();
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x00\x01\x02 not http/2 at all \xff\xff",
    ] {
        let mut raw = tokio::net::UnixStream::connect(served.path())
            .await
            .unwrap();
        raw.write_all(garbage).await.unwrap();
        let mut sink = Vec::new();
        // The server closes the connection; it does not hang or crash.
        tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink))
            .await
            .expect("server closes a garbage connection")
            .ok();
    }
    // A valid HTTP/2 preface followed by a malformed SETTINGS frame (5 bytes long).
    let mut raw = tokio::net::UnixStream::connect(served.path())
        .await
        .unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x05\x04\x00\x00\x00\x00\x00junk!")
        .await
        .unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink))
        .await
        .expect("server closes after a bad frame")
        .ok();
    still_serving(&served.client).await;
    let fresh = Client::connect(&Target::Unix(served.path().to_owned()))
        .await
        .unwrap();
    still_serving(&fresh).await;
    served.shutdown().await;
}

/// Sends one raw gRPC request and returns (grpc-status, grpc-message).
async fn raw_call(path: &std::path::Path, method: &str, message: &[u8]) -> (String, String) {
    let mut chan = H2Channel::connect(&Target::Unix(path.to_owned()))
        .await
        .unwrap();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://localhost/jumpstarter.v1.ExporterService/{method}"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(body),
        )))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(&mut chan, req).await.unwrap();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let get = |k: &str| {
        trailers
            .get(k)
            .or_else(|| headers.get(k))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

#[tokio::test]
async fn undecodable_messages_get_a_status() {
    let served = serve(tree()).await.unwrap();
    // Not protobuf at all.
    let (status, message) = raw_call(served.path(), "DriverCall", b"\xff\xff\xff\xff").await;
    assert_eq!(status, "13", "INTERNAL, got {status}: {message}");
    assert!(message.to_lowercase().contains("decode"), "{message}");
    // A string field (uuid, field 1) holding bytes that are not UTF-8.
    let (status, message) =
        raw_call(served.path(), "DriverCall", b"\x0a\x02\xff\xfe\x12\x02on").await;
    assert_eq!(status, "13", "INTERNAL, got {status}: {message}");
    // An unknown RPC.
    let (status, _) = raw_call(served.path(), "NoSuchRpc", b"").await;
    assert_eq!(status, "12", "UNIMPLEMENTED");
    still_serving(&served.client).await;
    served.shutdown().await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_stream() {
    let served = serve(tree()).await.unwrap();
    {
        let other = Client::connect(&Target::Unix(served.path().to_owned()))
            .await
            .unwrap();
        let mut s = other.get("probe").unwrap().stream("connect").await.unwrap();
        s.write_all(&[1u8; 100_000]).await.unwrap();
        let mut buf = [0u8; 10];
        s.read_exact(&mut buf).await.unwrap();
        // Drop the stream and the whole connection without any goodbye.
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    still_serving(&served.client).await;
    // A stream that is reset (dropped) mid-transfer on a live connection.
    let mut s = served
        .client
        .get("probe")
        .unwrap()
        .stream("connect")
        .await
        .unwrap();
    s.write_all(b"abc").await.unwrap();
    drop(s);
    still_serving(&served.client).await;
    served.shutdown().await;
}

#[tokio::test]
async fn calls_outside_lease_ready_fail_with_failed_precondition() {
    let served = serve(tree()).await.unwrap();
    served
        .session
        .set_status(ExporterStatus::Available, "Available for new lease");
    let e = served
        .client
        .get("probe")
        .unwrap()
        .call("ret", vec![Value::Null])
        .await
        .unwrap_err();
    assert!(e.as_call().unwrap().is_not_ready(), "{e}");
    assert!(
        e.to_string()
            .contains("Exporter not ready for driver calls"),
        "{e}"
    );
    // Hooks may call drivers.
    served
        .session
        .set_status(ExporterStatus::BeforeLeaseHook, "Running beforeLease hook");
    still_serving(&served.client).await;
    let status = served.client.get_status().await.unwrap();
    assert_eq!(status.status_version, 3);
    served.shutdown().await;
}

#[tokio::test]
async fn log_streams_end_when_the_session_closes() {
    let served = serve(tree()).await.unwrap();
    let mut logs = Box::pin(served.client.log_stream().await.unwrap());
    let client = served.client.clone();
    served.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = logs.next().await {}
    })
    .await;
    assert!(end.is_ok(), "LogStream ended");
    drop(client);
}

/// A driver that stores uploads and serves a fixed download, recording how calls ended.
struct Sink {
    stored: std::sync::Mutex<Vec<u8>>,
    outcomes: std::sync::Mutex<Vec<String>>,
}

const SINK_METHODS: &[Method] = &[
    Method::unary("write").params(&[Param::required("src")]),
    Method::unary("read").params(&[Param::required("dst")]),
];

#[async_trait]
impl Driver for Sink {
    fn client(&self) -> &str {
        "test.SinkClient"
    }
    fn methods(&self) -> &[Method] {
        SINK_METHODS
    }
    async fn call(
        &self,
        method: &str,
        args: Args,
        ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        let handle = args.raw(0).cloned().unwrap_or(Value::Null);
        let result = match method {
            "write" => match ctx.open_resource(&handle).await {
                Ok(res) => {
                    let mut buf = Vec::new();
                    res.copy_to(&mut buf).await.map(|_| {
                        *self.stored.lock().unwrap() = buf;
                        Value::Null
                    })
                }
                Err(e) => Err(e),
            },
            "read" => match ctx.open_resource(&handle).await {
                Ok(res) => res
                    .copy_from(&mut &b"stored image"[..])
                    .await
                    .map(|_| Value::Null),
                Err(e) => Err(e),
            },
            other => Err(DriverError::method_not_found(other)),
        };
        self.outcomes.lock().unwrap().push(match &result {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        });
        result
    }
}

fn sinks() -> (DriverTree, Arc<Sink>, Arc<Sink>) {
    let a = Arc::new(Sink {
        stored: Default::default(),
        outcomes: Default::default(),
    });
    let b = Arc::new(Sink {
        stored: Default::default(),
        outcomes: Default::default(),
    });
    let tree = DriverTree::composite(vec![
        ("a", Instance::new(a.clone(), "test.Sink")),
        ("b", Instance::new(b.clone(), "test.Sink")),
    ]);
    (tree, a, b)
}

#[tokio::test]
async fn handles_are_single_use_and_bound_to_their_driver() {
    let (tree, a, _b) = sinks();
    let served = serve(tree).await.unwrap();
    let (da, db) = (
        served.client.get("a").unwrap(),
        served.client.get("b").unwrap(),
    );

    // A handle opened on `a` and given to `b` is not found there.
    let mut res = da.resource(None).await.unwrap();
    res.stream.write_all(b"data").await.unwrap();
    res.stream.shutdown().await.unwrap();
    let e = db
        .call("write", vec![res.handle.clone()])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unknown);
    assert!(e.to_string().contains("not found on this driver"), "{e}");
    // On its own driver it works once...
    assert_eq!(
        da.call("write", vec![res.handle.clone()]).await.unwrap(),
        Value::Null
    );
    assert_eq!(*a.stored.lock().unwrap(), b"data");
    // ...and only once.
    let e = da
        .call("write", vec![res.handle.clone()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not found on this driver"), "{e}");
    drop(res);

    // The usual way: stream and call together.
    let data = b"image bytes".to_vec();
    let v = da
        .upload(
            "write",
            |h| vec![h],
            std::io::Cursor::new(data.clone()),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(v, Value::Null);
    assert_eq!(*a.stored.lock().unwrap(), data);
    still_serving_sink(da).await;
    served.shutdown().await;
}

async fn still_serving_sink(d: &jumpstarter_core::DriverClient) {
    let (tx, mut rx) = tokio::io::duplex(1024);
    d.download("read", |h| vec![h], tx, None, None)
        .await
        .unwrap();
    let mut got = Vec::new();
    rx.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"stored image");
}

#[tokio::test]
async fn an_upload_reset_mid_transfer_fails_the_call() {
    let (tree, a, _b) = sinks();
    let served = serve(tree).await.unwrap();
    let da = served.client.get("a").unwrap().clone();
    let mut res = da.resource(None).await.unwrap();
    res.stream.write_all(&[7u8; 100_000]).await.unwrap();
    let handle = res.handle.clone();
    let call = tokio::spawn({
        let da = da.clone();
        async move { da.call("write", vec![handle]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The client resets the stream without sending its end.
    drop(res);
    let e = call.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("ended before its end"), "{e}");
    assert!(
        a.stored.lock().unwrap().is_empty(),
        "nothing stored from a partial upload"
    );
    assert!(a.outcomes.lock().unwrap()[0].contains("ended before its end"));
    still_serving_sink(&da).await;
    served.shutdown().await;
}

#[tokio::test]
async fn unsupported_encodings_are_refused_when_the_stream_opens() {
    let (tree, _a, _b) = sinks();
    let served = serve(tree).await.unwrap();
    let da = served.client.get("a").unwrap();
    // The typed API only knows the four encodings; send the raw request by hand.
    let err = da.stream("unused").await.unwrap_err();
    assert_eq!(code(&err), Code::NotFound);
    let mut raw = jumpstarter_protocol::v1::router_service_client::RouterServiceClient::with_origin(
        H2Channel::connect(&Target::Unix(served.path().to_owned()))
            .await
            .unwrap(),
        jumpstarter_core::transport::origin(),
    );
    let mut req = tonic::Request::new(futures::stream::empty());
    let meta =
        json!({"kind": "resource", "uuid": da.uuid(), "x_jmp_content_encoding": "lz4"}).to_string();
    req.metadata_mut().insert("request", meta.parse().unwrap());
    let status = raw.stream(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("unsupported content encoding 'lz4'"),
        "{}",
        status.message()
    );
    // Each supported encoding is accepted and echoed.
    for e in jumpstarter_core::Encoding::ALL {
        let res = da.resource(Some(e)).await.unwrap();
        assert_eq!(res.accept.as_deref(), Some(e.as_str()));
        assert_eq!(res.handle["x_jmp_content_encoding"], json!(e.as_str()));
        assert_eq!(res.handle["kind"], json!("client_stream"));
    }
    // No encoding: the accept key is present and empty, as upstream sends it.
    let res = da.resource(None).await.unwrap();
    assert_eq!(res.accept.as_deref(), Some(""));
    assert_eq!(res.handle["x_jmp_content_encoding"], Value::Null);
    served.shutdown().await;
}

/// A writer that keeps what it is given until flushed, and whose shutdown does not flush
/// (as tokio's stdout).
struct LazyWriter {
    pending: Vec<u8>,
    committed: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncWrite for LazyWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let pending = std::mem::take(&mut self.pending);
        self.committed.lock().unwrap().extend(pending);
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn downloads_flush_sinks_whose_shutdown_does_not() {
    let (tree, _a, _b) = sinks();
    let served = serve(tree).await.unwrap();
    let da = served.client.get("a").unwrap();
    let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = LazyWriter {
        pending: Vec::new(),
        committed: committed.clone(),
    };
    da.download("read", |h| vec![h], sink, None, None)
        .await
        .unwrap();
    assert_eq!(*committed.lock().unwrap(), b"stored image");
    served.shutdown().await;
}
