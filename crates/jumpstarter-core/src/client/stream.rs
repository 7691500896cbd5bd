//! A byte stream opened on a driver (`RouterService.Stream` with `kind: driver`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use jumpstarter_protocol::frames::Frame;
use jumpstarter_protocol::v1::{StreamRequest, StreamResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::{CallKind, ClientError, Rpc};
use crate::stream::FrameIo;

type Incoming = futures::stream::Map<
    tonic::Streaming<StreamResponse>,
    fn(Result<StreamResponse, tonic::Status>) -> Result<Frame, tonic::Status>,
>;

fn to_frame(r: Result<StreamResponse, tonic::Status>) -> Result<Frame, tonic::Status> {
    r.map(StreamResponse::frame)
}

/// An open driver stream. Reads return what the driver sends until it ends its side;
/// `shutdown()` ends ours (GOAWAY, then half-close); dropping it cancels the RPC.
pub struct DriverStream {
    io: FrameIo<Incoming, StreamRequest>,
    metadata: MetadataMap,
}

impl std::fmt::Debug for DriverStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverStream").finish_non_exhaustive()
    }
}

impl DriverStream {
    pub(crate) async fn open(
        rpc: &Rpc,
        request: String,
        method: &str,
    ) -> Result<Self, ClientError> {
        let (tx, rx) = mpsc::channel::<StreamRequest>(32);
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        let value = MetadataValue::try_from(request.as_str())
            .map_err(|e| ClientError::shape(method, format!("bad stream request: {e}")))?;
        req.metadata_mut()
            .insert(jumpstarter_protocol::metadata::REQUEST, value);
        let resp = rpc
            .router
            .clone()
            .stream(req)
            .await
            .map_err(|s| ClientError::call(CallKind::Stream, method, s))?;
        let metadata = resp.metadata().clone();
        let incoming = resp.into_inner().map(to_frame as fn(_) -> _);
        Ok(DriverStream {
            io: FrameIo::new(incoming, tx, StreamRequest::data, StreamRequest::goaway),
            metadata,
        })
    }

    /// Response metadata sent when the stream was opened.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }
}

impl AsyncRead for DriverStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for DriverStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
