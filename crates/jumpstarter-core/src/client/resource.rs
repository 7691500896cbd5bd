//! The client side of resources: stream a local source to a driver method, or a driver
//! method's output into a local sink.
//!
//! `encoding` always means "the local data is in this format". The client asks the exporter
//! to take that encoding (`x_jmp_content_encoding`); if the exporter's answer carries the
//! `x_jmp_accept_encoding` key at all (any value, even empty: upstream sends "" and decodes per
//! handle anyway), the bytes cross the wire unchanged. Only when the key is absent does the
//! client decode before uploading or encode after downloading (protocol notes §5.5).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{ClientError, DriverClient, DriverStream};
use crate::resource::{COPY_CHUNK, Encoding, encoding};

/// Told how many bytes moved since the last call (of the local file's bytes).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// A resource stream opened on a driver, and what the exporter said about it.
#[derive(Debug)]
pub struct ResourceStream {
    /// The handle to pass to the driver method.
    pub handle: Value,
    /// `x_jmp_accept_encoding` as sent (None when the key was absent).
    pub accept: Option<String>,
    pub stream: DriverStream,
}

impl DriverClient {
    /// Opens a resource stream on this driver.
    pub async fn resource(
        &self,
        encoding: Option<Encoding>,
    ) -> Result<ResourceStream, ClientError> {
        let request = serde_json::json!({
            "kind": "resource",
            "uuid": self.uuid(),
            "x_jmp_content_encoding": encoding.map(Encoding::as_str),
        });
        let stream = DriverStream::open(&self.rpc, request.to_string(), "resource").await?;
        let md = stream.metadata();
        let handle_text = md
            .get(jumpstarter_protocol::metadata::RESOURCE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ClientError::shape("resource", "the exporter sent no resource handle")
            })?;
        let handle: Value = serde_json::from_str(handle_text)
            .map_err(|e| ClientError::shape("resource", format!("bad resource handle: {e}")))?;
        let accept = md
            .get(jumpstarter_protocol::metadata::ACCEPT_ENCODING)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        Ok(ResourceStream {
            handle,
            accept,
            stream,
        })
    }

    /// Streams `source` to this driver while calling `method(args(handle))`; returns the
    /// call's result. The call decides: if it fails, the upload is abandoned.
    pub async fn upload<R>(
        &self,
        method: &str,
        args: impl FnOnce(Value) -> Vec<Value>,
        source: R,
        encoding: Option<Encoding>,
        progress: Option<Progress>,
    ) -> Result<Value, ClientError>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let res = self.resource(encoding).await?;
        let decode_here = encoding.filter(|_| res.accept.is_none());
        let mut stream = res.stream;
        // The stream outlives the pump (its response side stays open until the call ends).
        let (keep_tx, _keep) = tokio::sync::oneshot::channel();
        let source = Counting {
            inner: source,
            progress,
        };
        let pump = async move {
            let src: Pin<Box<dyn AsyncRead + Send>> = match decode_here {
                Some(e) => encoding::decoder(e, source),
                None => Box::pin(source),
            };
            // Each chunk read becomes the payload of frames without another copy.
            let mut chunks = tokio_util::io::ReaderStream::with_capacity(src, COPY_CHUNK);
            while let Some(chunk) = chunks.next().await {
                stream.send_data(chunk?).await?;
            }
            stream.shutdown().await?;
            let _ = keep_tx.send(stream);
            Ok::<_, std::io::Error>(())
        };
        let call = self.call(method, args(res.handle));
        race(pump, call, Duration::from_secs(5)).await
    }

    /// Calls `method(args(handle))` while writing what the driver sends into `sink`; returns
    /// the call's result once the data is complete in `sink` (flushed and shut down).
    pub async fn download<W>(
        &self,
        method: &str,
        args: impl FnOnce(Value) -> Vec<Value>,
        sink: W,
        encoding: Option<Encoding>,
        progress: Option<Progress>,
    ) -> Result<Value, ClientError>
    where
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let res = self.resource(encoding).await?;
        let encode_here = encoding.filter(|_| res.accept.is_none());
        // The exporter encodes: check that what it sends is complete before calling the
        // download done (upstream 0.9.0's exporter, for one, never writes the trailer).
        let mut verifier = encoding
            .filter(|_| res.accept.is_some())
            .map(Verifier::start);
        let (mut rd, mut wr) = tokio::io::split(res.stream);
        // Nothing to upload: end our direction at once (as upstream's client does).
        wr.shutdown().await?;
        let pump = async move {
            // Some sinks (tokio's stdout) do not flush on shutdown; ours must be complete.
            let sink = FlushOnShutdown(sink);
            let mut sink: Pin<Box<dyn AsyncWrite + Send>> = match encode_here {
                Some(e) => encoding::encoder(e, sink),
                None => Box::pin(sink),
            };
            let mut buf = vec![0u8; COPY_CHUNK];
            loop {
                let n = rd.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                sink.write_all(&buf[..n]).await?;
                if let Some(v) = &mut verifier {
                    v.feed(&buf[..n]).await?;
                }
                if let Some(p) = &progress {
                    p(n as u64);
                }
            }
            sink.shutdown().await?;
            if let Some(v) = verifier {
                v.finish().await?;
            }
            drop(wr);
            Ok::<_, std::io::Error>(())
        };
        let call = self.call(method, args(res.handle));
        // A download is complete only when the sink has everything: no grace period.
        race(pump, call, Duration::MAX).await
    }
}

/// A writer whose shutdown flushes first.
struct FlushOnShutdown<W>(W);

impl<W: AsyncWrite + Unpin> AsyncWrite for FlushOnShutdown<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Decodes a copy of an encoded download, to tell a complete stream from a truncated one.
struct Verifier {
    encoding: Encoding,
    input: tokio::io::WriteHalf<tokio::io::SimplexStream>,
    task: Option<tokio::task::JoinHandle<std::io::Result<u64>>>,
}

impl Verifier {
    fn start(encoding: Encoding) -> Verifier {
        let (rx, input) = tokio::io::simplex(COPY_CHUNK);
        let task = tokio::spawn(async move {
            let mut decoded = encoding::decoder(encoding, rx);
            tokio::io::copy(&mut decoded, &mut tokio::io::sink()).await
        });
        Verifier {
            encoding,
            input,
            task: Some(task),
        }
    }

    async fn feed(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.input.write_all(data).await.is_err() {
            // The decoder stopped early: `finish` says why.
            return self.finish_ref().await;
        }
        Ok(())
    }

    async fn finish_ref(&mut self) -> std::io::Result<()> {
        let _ = self.input.shutdown().await;
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let result = task.await.map_err(std::io::Error::other)?;
        result.map(drop).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the exporter's {} stream is incomplete or corrupt ({e})",
                    self.encoding
                ),
            )
        })
    }

    async fn finish(mut self) -> std::io::Result<()> {
        self.finish_ref().await
    }
}

/// Runs a transfer next to the call that consumes or produces it. A failing call wins; a
/// failing transfer wins; after a successful call, the transfer gets `grace` to finish
/// (`Duration::MAX`: it must finish).
async fn race<P, C>(pump: P, call: C, grace: Duration) -> Result<Value, ClientError>
where
    P: Future<Output = std::io::Result<()>>,
    C: Future<Output = Result<Value, ClientError>>,
{
    tokio::pin!(pump, call);
    let mut pumped: Option<std::io::Result<()>> = None;
    loop {
        tokio::select! {
            r = &mut pump, if pumped.is_none() => {
                if let Err(e) = r {
                    // The call may explain better (e.g. the driver rejected the data).
                    return match tokio::time::timeout(Duration::from_secs(5), &mut call).await {
                        Ok(Err(call_err)) => Err(call_err),
                        _ => Err(ClientError::Io(e)),
                    };
                }
                pumped = Some(Ok(()));
            }
            r = &mut call => {
                let value = r?;
                if pumped.is_none() {
                    let finished = if grace == Duration::MAX {
                        Some(pump.await)
                    } else {
                        tokio::time::timeout(grace, pump).await.ok()
                    };
                    match finished {
                        Some(Err(e)) => return Err(ClientError::Io(e)),
                        Some(Ok(())) => {}
                        None => tracing::debug!("the driver finished before taking all of the upload"),
                    }
                }
                return Ok(value);
            }
        }
    }
}

/// Counts bytes read through it.
struct Counting<R> {
    inner: R,
    progress: Option<Progress>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0
            && let Some(p) = &self.progress
        {
            p(n as u64);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn verify(encoding: Encoding, data: &[u8]) -> std::io::Result<()> {
        let mut v = Verifier::start(encoding);
        for chunk in data.chunks(1000) {
            v.feed(chunk).await?;
        }
        v.finish().await
    }

    #[tokio::test]
    async fn the_verifier_tells_complete_streams_from_truncated_ones() {
        let raw: Vec<u8> = (0u32..200_000).map(|i| (i * 7 % 251) as u8).collect();
        for e in Encoding::ALL {
            let mut full = Vec::new();
            let mut enc = encoding::encoder(e, &mut full);
            enc.write_all(&raw).await.unwrap();
            enc.shutdown().await.unwrap();
            drop(enc);
            verify(e, &full).await.unwrap();
            // Empty is a valid (empty) dump.
            verify(e, b"").await.unwrap();
            // Any truncation is an error that names the encoding.
            for cut in [1, full.len() / 2, full.len() - 1] {
                let err = verify(e, &full[..cut]).await.unwrap_err();
                assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{e} {cut}");
                assert!(
                    err.to_string()
                        .contains(&format!("the exporter's {e} stream is incomplete")),
                    "{err}"
                );
            }
        }
    }
}
