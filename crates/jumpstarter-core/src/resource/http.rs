//! `presigned_request` handles: the exporter fetches (GET) or uploads (PUT) over HTTP.
//!
//! Redirects (301/302/303/307/308, up to 10) are followed by hand so the URL of each hop is
//! used exactly as the server wrote it (signed S3/CloudFront URLs break when %XX sequences are
//! normalized), and credentials (`authorization`, `cookie`, `proxy-authorization`, `x-amz-*`,
//! `x-ms-*`, `x-goog-*`) are dropped when a redirect leaves the origin. Query strings are
//! redacted in error messages.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use super::Resource;
use super::encoding::{BoxRead, BoxWrite};
use crate::driver::DriverError;

const MAX_REDIRECTS: usize = 10;

/// Installs ring as the process's TLS crypto provider (once; harmless if one is installed).
pub fn ensure_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn client() -> Result<&'static reqwest::Client, DriverError> {
    static CLIENT: OnceLock<Result<reqwest::Client, reqwest::Error>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            ensure_crypto_provider();
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
        })
        .as_ref()
        .map_err(|e| DriverError::Other(format!("cannot create an HTTP client: {e}")))
}

/// The URL with its query replaced by `[REDACTED]` (signatures must not reach logs).
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?[REDACTED]"),
        None => url.to_owned(),
    }
}

const SENSITIVE: [&str; 6] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-amz-",
    "x-ms-",
    "x-goog-",
];

fn origin(u: &reqwest::Url) -> (String, Option<String>, Option<u16>) {
    (
        u.scheme().to_owned(),
        u.host_str().map(str::to_owned),
        u.port_or_known_default(),
    )
}

/// Headers to keep when following a redirect from `from` to `to`.
pub fn redirect_headers(
    headers: &BTreeMap<String, String>,
    from: &reqwest::Url,
    to: &reqwest::Url,
) -> BTreeMap<String, String> {
    if origin(from) == origin(to) {
        return headers.clone();
    }
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !SENSITIVE.iter().any(|s| k.starts_with(s))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn parse_url(url: &str) -> Result<reqwest::Url, DriverError> {
    reqwest::Url::parse(url)
        .map_err(|e| DriverError::invalid(format!("invalid presigned URL {}: {e}", redact(url))))
}

fn request_error(method: &str, url: &str, e: reqwest::Error) -> DriverError {
    if e.is_timeout() {
        DriverError::Timeout(format!(
            "Presigned HTTP {method} request timed out for {}",
            redact(url)
        ))
    } else {
        DriverError::Other(format!(
            "Presigned HTTP {method} request failed for {}: {}",
            redact(url),
            error_chain(&e)
        ))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn build(
    method: reqwest::Method,
    url: &reqwest::Url,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<reqwest::RequestBuilder, DriverError> {
    let mut req = client()?.request(method, url.clone()).timeout(timeout);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    Ok(req)
}

/// GET, following redirects; the body as a reader.
pub async fn get(
    url: &str,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Resource, DriverError> {
    let mut current = parse_url(url)?;
    let mut headers = headers.clone();
    for _ in 0..=MAX_REDIRECTS {
        let resp = build(reqwest::Method::GET, &current, &headers, timeout)?
            .send()
            .await
            .map_err(|e| request_error("GET", current.as_str(), e))?;
        let status = resp.status();
        if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    DriverError::Other(format!(
                        "Presigned HTTP GET redirect missing Location header for {}",
                        redact(current.as_str())
                    ))
                })?;
            let next = current.join(location).map_err(|e| {
                DriverError::Other(format!(
                    "Presigned HTTP GET redirect to an invalid location from {}: {e}",
                    redact(current.as_str())
                ))
            })?;
            headers = redirect_headers(&headers, &current, &next);
            current = next;
            continue;
        }
        if !status.is_success() {
            return Err(DriverError::Other(format!(
                "Presigned HTTP GET request failed: status={}, reason={:?}, url={}",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                redact(current.as_str())
            )));
        }
        let shown = redact(current.as_str());
        let body = resp.bytes_stream().map_err(move |e| {
            io::Error::other(format!("download from {shown} failed: {}", error_chain(&e)))
        });
        let reader: BoxRead = Box::pin(tokio_util::io::StreamReader::new(body));
        let writer: BoxWrite = Box::pin(ReadOnly);
        return Ok(Resource::new(
            reader,
            writer,
            None,
            format!("the download from {}", redact(url)),
        ));
    }
    Err(DriverError::Other(format!(
        "Too many redirects ({MAX_REDIRECTS}) for {}",
        redact(url)
    )))
}

/// PUT with a streamed body: what the driver writes is uploaded; `close()` waits for the
/// server's answer.
pub fn put(
    url: &str,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Resource, DriverError> {
    let parsed = parse_url(url)?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(16);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let request = build(reqwest::Method::PUT, &parsed, headers, timeout)?.body(body);
    let shown = redact(url);
    let task = tokio::spawn(async move {
        let resp = request
            .send()
            .await
            .map_err(|e| request_error("PUT", parsed.as_str(), e))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DriverError::Other(format!(
                "Presigned HTTP PUT request failed: status={}, reason={:?}, url={shown}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )))
        }
    });
    let finish = Box::pin(async move {
        task.await
            .map_err(|e| DriverError::Other(format!("presigned upload task failed: {e}")))?
    });
    Ok(Resource::new(
        Box::pin(tokio::io::empty()),
        Box::pin(BodyWriter {
            tx: Some(PollSender::new(tx)),
        }),
        Some(finish),
        format!("the upload to {}", redact(url)),
    ))
}

/// Writes become chunks of a request body. Shutdown ends the body; dropping without shutdown
/// aborts the request, so a failed dump is never stored as a complete object.
struct BodyWriter {
    tx: Option<PollSender<Result<Bytes, io::Error>>>,
}

impl AsyncWrite for BodyWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        ready!(tx.poll_reserve(cx))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP request ended"))?;
        tx.send_item(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP request ended"))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx = None;
        Poll::Ready(Ok(()))
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take()
            && let Some(sender) = tx.get_ref()
        {
            let _ = sender.try_send(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the driver stopped before the end of the upload",
            )));
        }
    }
}

/// The write side of a GET resource.
struct ReadOnly;

impl AsyncWrite for ReadOnly {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a presigned GET resource can only be read",
        )))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_and_credential_stripping() {
        assert_eq!(
            redact("https://b/k?X-Amz-Signature=s"),
            "https://b/k?[REDACTED]"
        );
        assert_eq!(redact("https://b/k"), "https://b/k");
        let h: BTreeMap<String, String> = [
            ("Authorization", "Bearer x"),
            ("X-Amz-Date", "d"),
            ("Cookie", "c"),
            ("Accept", "*/*"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let a = reqwest::Url::parse("https://a.example/x").unwrap();
        let same = reqwest::Url::parse("https://a.example:443/y").unwrap();
        let other = reqwest::Url::parse("https://cdn.example/y").unwrap();
        assert_eq!(redirect_headers(&h, &a, &same).len(), 4);
        let kept = redirect_headers(&h, &a, &other);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["Accept"]);
    }

    #[test]
    fn urls_keep_their_percent_encoding() {
        let u = reqwest::Url::parse("http://h/a%40b/c%2Fd?sig=a%2Bb%3D").unwrap();
        assert_eq!(u.as_str(), "http://h/a%40b/c%2Fd?sig=a%2Bb%3D");
        let joined = u.join("/x%40y?s=%2F").unwrap();
        assert_eq!(joined.as_str(), "http://h/x%40y?s=%2F");
    }
}
