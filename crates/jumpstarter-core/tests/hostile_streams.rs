//! Hostile streams against a real session on a unix socket: abandoned uploads, handle floods,
//! oversized frames and stream churn. The exporter's own accounting ([`stream::gauges`], the
//! handles registered per driver) must stay bounded while the attack runs and return to zero
//! when it stops; the session keeps serving.
//!
//! The gauges are process-wide, so the tests of this file run one at a time (`SERIAL`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use jumpstarter_core::client::Code;
use jumpstarter_core::limits::{DEFAULT_MAX_RESOURCE_HANDLES, DEFAULT_STREAM_BUFFER};
use jumpstarter_core::stream::{self, Gauges, MAX_FRAME};
use jumpstarter_core::testing::{Served, serve};
use jumpstarter_core::transport::{H2Channel, Target};
use jumpstarter_core::{
    Args, BoxStream, CallContext, Driver, DriverError, DriverTree, Instance, Method, Param, Value,
};
use jumpstarter_protocol::v1::router_service_client::RouterServiceClient;
use jumpstarter_protocol::v1::{StreamRequest, StreamResponse};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const T: Duration = Duration::from_secs(20);

const METHODS: &[Method] = &[
    Method::unary("write").params(&[Param::required("src")]),
    Method::stream("connect"),
];

/// Stores uploads (`write`) and echoes streams (`connect`).
#[derive(Default)]
struct Sink {
    stored: std::sync::Mutex<Vec<u8>>,
}

#[async_trait]
impl Driver for Sink {
    fn client(&self) -> &str {
        "test.SinkClient"
    }
    fn methods(&self) -> &[Method] {
        METHODS
    }
    async fn call(
        &self,
        method: &str,
        args: Args,
        ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        match method {
            "write" => {
                let handle = args.raw(0).cloned().unwrap_or(Value::Null);
                let res = ctx.open_resource(&handle).await?;
                let mut buf = Vec::new();
                let n = res.copy_to(&mut buf).await?;
                *self.stored.lock().unwrap() = buf;
                Ok(Value::from(n))
            }
            other => Err(DriverError::method_not_found(other)),
        }
    }
    async fn open_stream(&self, _method: &str) -> Result<BoxStream, DriverError> {
        let (a, b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(b);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
        Ok(Box::new(a))
    }
}

fn tree() -> (DriverTree, Arc<Sink>) {
    let a = Arc::new(Sink::default());
    let tree = DriverTree::composite(vec![
        ("a", Instance::new(a.clone(), "test.Sink")),
        ("b", Instance::new(Arc::new(Sink::default()), "test.Sink")),
    ]);
    (tree, a)
}

/// Handles registered in the session and not yet opened.
fn handles(served: &Served) -> usize {
    served
        .session
        .tree()
        .instances()
        .iter()
        .map(|i| i.resources.len())
        .sum()
}

/// Waits until nothing is buffered, no byte channel or bridge is alive and no handle is
/// registered; fails with what is left.
async fn all_released(served: &Served) {
    let deadline = Instant::now() + T;
    loop {
        let g = stream::gauges();
        let h = handles(served);
        if g == Gauges::default() && h == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not released after {T:?}: {g:?}, {h} handles"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the buffered-bytes gauge stops moving (the senders are blocked).
async fn settled() -> Gauges {
    let mut last = stream::gauges();
    let deadline = Instant::now() + T;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stream::gauges();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A hostile client speaking HTTP/2 itself, so it can push data past what the exporter
/// reads and then reset its streams (RST_STREAM) or drop the connection.
struct RawClient {
    send: h2::client::SendRequest<Bytes>,
    conn: tokio::task::JoinHandle<()>,
}

/// A `Stream` call opened by a [`RawClient`]: its request body and its response.
struct RawStream {
    body: h2::SendStream<Bytes>,
    _response: h2::RecvStream,
}

impl RawClient {
    async fn connect(served: &Served) -> RawClient {
        let io = tokio::net::UnixStream::connect(served.path())
            .await
            .unwrap();
        let (send, conn) = h2::client::handshake(io).await.unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        RawClient { send, conn }
    }

    /// Opens a resource stream on `driver_uuid` and pushes `total` bytes of DATA frames
    /// (h2 buffers what the flow-control windows do not let through yet).
    async fn abandoned_upload(&mut self, driver_uuid: &str, total: usize) -> RawStream {
        let request = json!({"kind": "resource", "uuid": driver_uuid}).to_string();
        let req = http::Request::builder()
            .method("POST")
            .uri("http://localhost/jumpstarter.v1.RouterService/Stream")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("request", request)
            .body(())
            .unwrap();
        self.send = self.send.clone().ready().await.unwrap();
        let (response, mut body) = self.send.send_request(req, false).unwrap();
        let response = tokio::time::timeout(T, response).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().get("resource").is_some(),
            "no handle: {:?}",
            response.headers()
        );
        let msg = prost::Message::encode_to_vec(&StreamRequest::data(Bytes::from(vec![
            0x5au8;
            MAX_FRAME
        ])));
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
        let framed = Bytes::from(framed);
        for _ in 0..total.div_ceil(MAX_FRAME) {
            body.send_data(framed.clone(), false).unwrap();
        }
        RawStream {
            body,
            _response: response.into_body(),
        }
    }
}

impl RawStream {
    fn reset(mut self) {
        self.body.send_reset(h2::Reason::CANCEL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_abandoned_uploads_are_bounded_and_freed_when_their_streams_end() {
    let _serial = SERIAL.lock().await;
    let (tree, _a) = tree();
    let served = serve(tree).await.unwrap();
    let rss_start = rss_kib();
    const PER_STREAM: usize = 64 << 20;
    let uuids = [
        served.client.get("a").unwrap().uuid().to_owned(),
        served.client.get("b").unwrap().uuid().to_owned(),
    ];
    for round in 0..3 {
        let mut raw = RawClient::connect(&served).await;
        let mut streams = Vec::new();
        for i in 0..4 {
            streams.push(raw.abandoned_upload(&uuids[i % 2], PER_STREAM).await);
        }
        let g = settled().await;
        assert_eq!(handles(&served), 4, "round {round}");
        assert_eq!(g.bridges, 4, "round {round}: {g:?}");
        assert!(
            g.buffered_bytes > 0,
            "round {round}: nothing buffered? {g:?}"
        );
        let bound = 4 * (DEFAULT_STREAM_BUFFER + MAX_FRAME);
        assert!(
            g.buffered_bytes <= bound,
            "round {round}: {} bytes buffered for 4 streams, bound {bound}",
            g.buffered_bytes
        );
        if round < 2 {
            // The client resets its streams without ever using the handles.
            for s in streams {
                s.reset();
            }
            all_released(&served).await;
            drop(raw);
        } else {
            // The client's connection goes away.
            raw.conn.abort();
            drop((raw, streams));
            all_released(&served).await;
        }
    }
    // RSS is a coarse check (the allocator may keep freed pages): three rounds of 256 MiB
    // offered must not have grown the process by anything like that.
    let grown = rss_kib().saturating_sub(rss_start);
    assert!(grown < 160 * 1024, "RSS grew by {grown} KiB");
    // The session still serves uploads.
    let v = served
        .client
        .get("a")
        .unwrap()
        .upload(
            "write",
            |h| vec![h],
            std::io::Cursor::new(b"after".to_vec()),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(v, Value::from(5));
    all_released(&served).await;
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_resource_handles_are_bounded_per_session() {
    let _serial = SERIAL.lock().await;
    let (tree, a) = tree();
    let served = serve(tree).await.unwrap();
    let max = DEFAULT_MAX_RESOURCE_HANDLES;
    let mut open = Vec::new();
    // The bound is per session: handles on both drivers count.
    for i in 0..max {
        let driver = if i % 2 == 0 { "a" } else { "b" };
        open.push(
            served
                .client
                .get(driver)
                .unwrap()
                .resource(None)
                .await
                .unwrap(),
        );
    }
    assert_eq!(handles(&served), max);
    let e = served
        .client
        .get("a")
        .unwrap()
        .resource(None)
        .await
        .unwrap_err();
    let call = e.as_call().expect("a call error");
    assert_eq!(call.code, Code::ResourceExhausted, "{e}");
    assert!(
        e.to_string().contains(&format!(
            "limit reached: {max} resource handles open at once per session (JMP_MAX_RESOURCE_HANDLES)"
        )),
        "{e}"
    );
    // A stream that ends frees its handle; a handle that is used frees its slot too.
    drop(open.pop());
    let deadline = Instant::now() + T;
    while handles(&served) != max - 1 {
        assert!(
            Instant::now() < deadline,
            "the reset stream's handle was not freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = served
        .client
        .get("a")
        .unwrap()
        .upload(
            "write",
            |h| vec![h],
            std::io::Cursor::new(b"fits".to_vec()),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(v, Value::from(4));
    assert_eq!(*a.stored.lock().unwrap(), b"fits");
    assert_eq!(handles(&served), max - 1);
    drop(open);
    all_released(&served).await;

    // Ten thousand handles opened and dropped unused, 50 at a time: nothing accumulates.
    let client = served.client.clone();
    let rss_start = rss_kib();
    for _ in 0..200 {
        let batch = futures::future::join_all((0..50).map(|_| {
            let client = client.clone();
            async move { client.get("b").unwrap().resource(None).await.unwrap() }
        }))
        .await;
        drop(batch);
        // Release is asynchronous (the reset has to reach the session): wait for it.
        all_released(&served).await;
    }
    let grown = rss_kib().saturating_sub(rss_start);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_end_session_and_close_drop_unused_handles() {
    let _serial = SERIAL.lock().await;
    let (tree, _a) = tree();
    let served = serve(tree).await.unwrap();
    let mut raw = RawClient::connect(&served).await;
    let mut streams = Vec::new();
    for driver in ["a", "b", "a"] {
        let uuid = served.client.get(driver).unwrap().uuid().to_owned();
        streams.push(raw.abandoned_upload(&uuid, 16 << 20).await);
    }
    let g = settled().await;
    assert!(g.buffered_bytes > 0, "{g:?}");
    assert_eq!(handles(&served), 3);
    // EndSession: the client is done, so are its handles (the streams stay open here).
    let _ = served.client.end_session().await.unwrap();
    all_released(&served).await;
    drop((streams, raw));

    // close(): streams still open with data in them end, and everything is freed.
    let mut kept = Vec::new();
    for driver in ["a", "b"] {
        let mut res = served
            .client
            .get(driver)
            .unwrap()
            .resource(None)
            .await
            .unwrap();
        res.stream
            .send_data(Bytes::from(vec![1u8; 1 << 20]))
            .await
            .unwrap();
        kept.push(res);
    }
    let mut echo = served
        .client
        .get("a")
        .unwrap()
        .stream("connect")
        .await
        .unwrap();
    echo.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    echo.read_exact(&mut buf).await.unwrap();
    let deadline = Instant::now() + T;
    while handles(&served) != 2 || stream::gauges().bridges != 3 {
        assert!(Instant::now() < deadline, "{:?}", stream::gauges());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    served.session.close().await;
    let deadline = Instant::now() + T;
    loop {
        let g = stream::gauges();
        if g == Gauges::default() && handles(&served) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not released by close: {g:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((kept, echo));
    served.shutdown().await;
}

/// Opens a raw `Stream` call with `request` metadata, sends `frames`, and returns what comes
/// back: the DATA bytes and the final status (None: OK).
async fn raw_stream(
    served: &Served,
    request: serde_json::Value,
    frames: Vec<StreamRequest>,
) -> (Vec<u8>, Option<tonic::Status>) {
    let mut raw = RouterServiceClient::with_origin(
        H2Channel::connect(&Target::Unix(served.path().to_owned()))
            .await
            .unwrap(),
        jumpstarter_core::transport::origin(),
    );
    // Keep the request side open (no half-close) so only the exporter ends the call.
    let outgoing = futures::stream::iter(frames).chain(futures::stream::pending());
    let mut req = tonic::Request::new(outgoing);
    req.metadata_mut()
        .insert("request", request.to_string().parse().unwrap());
    let mut incoming = match raw.stream(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return (Vec::new(), Some(s)),
    };
    let mut data = Vec::new();
    let end = tokio::time::timeout(T, async {
        loop {
            match incoming.message().await {
                Ok(Some(m)) => {
                    let m: StreamResponse = m;
                    data.extend_from_slice(&m.payload);
                }
                Ok(None) => return None,
                Err(s) => return Some(s),
            }
        }
    })
    .await
    .expect("the exporter ends the stream");
    (data, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_oversized_frames_end_byte_streams_with_an_error_naming_the_limit() {
    let _serial = SERIAL.lock().await;
    let (tree, a) = tree();
    let served = serve(tree).await.unwrap();
    let uuid = served.client.get("a").unwrap().uuid().to_owned();
    let big = StreamRequest::data(Bytes::from(vec![7u8; 5 << 20]));
    let small = StreamRequest::data(Bytes::from_static(b"fine"));
    for request in [
        json!({"kind": "driver", "uuid": uuid, "method": "connect"}),
        json!({"kind": "resource", "uuid": uuid}),
    ] {
        let (_, status) =
            raw_stream(&served, request.clone(), vec![small.clone(), big.clone()]).await;
        let status = status.unwrap_or_else(|| panic!("{request}: ended with OK"));
        assert_eq!(
            status.code(),
            tonic::Code::ResourceExhausted,
            "{request}: {status:?}"
        );
        assert!(
            status.message().contains("message size limit") && status.message().contains("4194304"),
            "{request}: {}",
            status.message()
        );
    }
    // An upload cut by a bad frame is never stored as a short one, and nothing stays behind.
    assert!(a.stored.lock().unwrap().is_empty());
    all_released(&served).await;
    // The session serves on.
    let mut echo = served
        .client
        .get("a")
        .unwrap()
        .stream("connect")
        .await
        .unwrap();
    echo.write_all(b"still here").await.unwrap();
    echo.shutdown().await.unwrap();
    let mut back = Vec::new();
    echo.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"still here");
    drop(echo);
    all_released(&served).await;
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_stream_churn_leaves_nothing_running() {
    let _serial = SERIAL.lock().await;
    let (tree, _a) = tree();
    let served = serve(tree).await.unwrap();
    let client = served.client.clone();
    let rss_start = rss_kib();
    // 5,000 streams, 100 open at a time, each used once and then dropped (reset).
    for _ in 0..50 {
        let batch = futures::future::join_all((0..100).map(|i| {
            let client = client.clone();
            async move {
                let mut s = client.get("a").unwrap().stream("connect").await.unwrap();
                if i % 2 == 0 {
                    s.write_all(b"x").await.unwrap();
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await.unwrap();
                }
                s
            }
        }))
        .await;
        drop(batch);
    }
    all_released(&served).await;
    let grown = rss_kib().saturating_sub(rss_start);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    served.shutdown().await;
}
