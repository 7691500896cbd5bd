//! `presigned_request` handles against a local HTTP server: GET with redirects (byte-exact
//! URLs, credentials dropped across origins, loops refused), errors, and PUT.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use jumpstarter_core::{CallContext, DriverError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the server saw it: raw URI, authorization header, x-amz-date header.
type Request = (String, Option<String>, Option<String>);

#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<Request>>>,
    uploaded: Arc<Mutex<Vec<u8>>>,
    /// The address clients reach this server at (for absolute redirects).
    other_origin: Arc<Mutex<String>>,
}

fn payload() -> Vec<u8> {
    (0..2_000_000u32).map(|i| (i % 253) as u8).collect()
}

async fn record(State(s): State<Seen>, uri: Uri, headers: HeaderMap) {
    let h = |k: &str| {
        headers
            .get(k)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    s.requests
        .lock()
        .unwrap()
        .push((uri.to_string(), h("authorization"), h("x-amz-date")));
}

async fn server() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(
            "/file/{name}",
            get(|State(s): State<Seen>, uri: Uri, headers: HeaderMap| async move {
                record(State(s), uri, headers).await;
                payload()
            }),
        )
        .route(
            "/loop",
            get(|State(s): State<Seen>, uri: Uri, headers: HeaderMap| async move {
                record(State(s), uri, headers).await;
                (StatusCode::FOUND, [(header::LOCATION, "/loop")])
            }),
        )
        .route(
            "/hop/{n}",
            get(|State(s): State<Seen>, Path(n): Path<u32>, uri: Uri, headers: HeaderMap| async move {
                record(State(s), uri, headers).await;
                let next = if n == 0 {
                    // Percent-encoded on purpose: it must arrive exactly like this.
                    "/file/a%40b%2Fc?X-Amz-Signature=x%2By".to_owned()
                } else {
                    format!("/hop/{}", n - 1)
                };
                (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, next)])
            }),
        )
        .route(
            "/cross",
            get(|State(s): State<Seen>, uri: Uri, headers: HeaderMap| async move {
                let target = format!("{}/file/x", s.other_origin.lock().unwrap());
                record(State(s), uri, headers).await;
                (StatusCode::FOUND, [(header::LOCATION, target)])
            }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/upload",
            any(|State(s): State<Seen>, body: Bytes| async move {
                s.uploaded.lock().unwrap().extend_from_slice(&body);
                StatusCode::OK
            }),
        )
        .route("/forbidden", any(|| async { Response::builder().status(403).body(Body::from("no")).unwrap().into_response() }))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Same server, another origin: `localhost` instead of the IP.
    *seen.other_origin.lock().unwrap() = format!("http://localhost:{}", addr.port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn get_handle(url: String, headers: serde_json::Value) -> serde_json::Value {
    json!({"kind": "presigned_request", "headers": headers, "url": url, "method": "GET"})
}

#[tokio::test]
async fn get_follows_redirects_byte_exact() {
    let (addr, seen) = server().await;
    let ctx = CallContext::default();
    let res = ctx
        .open_resource(&get_handle(format!("http://{addr}/hop/3"), json!({})))
        .await
        .unwrap();
    let mut got = Vec::new();
    res.copy_to(&mut got).await.unwrap();
    assert_eq!(got, payload());
    let uris: Vec<String> = seen
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.0.clone())
        .collect();
    assert_eq!(
        uris,
        [
            "/hop/3",
            "/hop/2",
            "/hop/1",
            "/hop/0",
            "/file/a%40b%2Fc?X-Amz-Signature=x%2By"
        ]
    );
}

#[tokio::test]
async fn credentials_are_dropped_when_a_redirect_leaves_the_origin() {
    let (addr, seen) = server().await;
    let ctx = CallContext::default();
    let headers = json!({"Authorization": "Bearer secret", "X-Amz-Date": "20261121"});
    let res = ctx
        .open_resource(&get_handle(format!("http://{addr}/cross"), headers))
        .await
        .unwrap();
    res.copy_to(&mut Vec::new()).await.unwrap();
    let requests = seen.requests.lock().unwrap().clone();
    assert_eq!(requests[0].1.as_deref(), Some("Bearer secret"));
    assert_eq!(requests[0].2.as_deref(), Some("20261121"));
    assert_eq!(requests[1].0, "/file/x");
    assert_eq!(requests[1].1, None, "authorization dropped across origins");
    assert_eq!(requests[1].2, None, "x-amz-* dropped across origins");
}

#[tokio::test]
async fn redirect_loops_and_errors_fail_clearly() {
    let (addr, _) = server().await;
    let ctx = CallContext::default();
    let err = ctx
        .open_resource(&get_handle(
            format!("http://{addr}/loop?sig=secret"),
            json!({}),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Too many redirects (10)"), "{err}");
    assert!(
        !err.to_string().contains("secret"),
        "query strings are redacted: {err}"
    );
    let err = ctx
        .open_resource(&get_handle(format!("http://{addr}/missing"), json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("status=404"), "{err}");
    // Nothing listens on port 1.
    let err = ctx
        .open_resource(&get_handle("http://127.0.0.1:1/x".into(), json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Other(_)), "{err}");
    let err = ctx
        .open_resource(&get_handle("not a url".into(), json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn put_uploads_what_the_driver_writes() {
    let (addr, seen) = server().await;
    let ctx = CallContext::default();
    let handle = json!({"kind": "presigned_request", "headers": {}, "url": format!("http://{addr}/upload"), "method": "PUT"});
    let res = ctx.open_resource(&handle).await.unwrap();
    let data = payload();
    res.copy_from(&mut data.as_slice()).await.unwrap();
    assert_eq!(*seen.uploaded.lock().unwrap(), data);
    // A server that refuses the upload makes close() fail: no silent partial success.
    let handle = json!({"kind": "presigned_request", "headers": {}, "url": format!("http://{addr}/forbidden"), "method": "PUT"});
    let mut res = ctx.open_resource(&handle).await.unwrap();
    res.write_all(b"some bytes").await.unwrap();
    let err = res.close().await.unwrap_err();
    assert!(err.to_string().contains("status=403"), "{err}");
    // A GET resource cannot be written.
    let mut res = ctx
        .open_resource(&get_handle(format!("http://{addr}/file/x"), json!({})))
        .await
        .unwrap();
    assert!(res.write_all(b"x").await.is_err());
    let mut first = [0u8; 4];
    res.read_exact(&mut first).await.unwrap();
}
