//! A byte stream opened on a driver (`RouterService.Stream` with `kind: driver`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use jumpstarter_protocol::frames::Frame;
use jumpstarter_protocol::v1::{StreamRequest, StreamResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::{CallKind, ClientError, Rpc};
use crate::stream::FrameIo;

type Incoming = futures::stream::Map<
    tonic::Streaming<StreamResponse>,
    fn(Result<StreamResponse, tonic::Status>) -> Result<Frame, tonic::Status>,
>;

const STREAM_PATH: &str = "/jumpstarter.v1.RouterService/Stream";

/// What our side of a `Stream` call sends: frames, or the news that we gave up.
enum Outgoing {
    Frame(StreamRequest),
    Abort,
}

/// The request body: our frames until the sender goes away. A sender that goes away without
/// having sent GOAWAY abandoned the stream: then one `Abort` follows, which the encoder
/// refuses, so the HTTP/2 stream is reset instead of half-closed. (A half-close means "end
/// of data" in this protocol; an abandoned upload must never look finished.)
struct Requests {
    rx: mpsc::Receiver<StreamRequest>,
    goaway_sent: bool,
    done: bool,
}

impl futures::Stream for Requests {
    type Item = Outgoing;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        if self.done {
            return Poll::Ready(None);
        }
        match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(frame) => {
                if frame.frame_type == jumpstarter_protocol::v1::FrameType::Goaway as i32 {
                    self.goaway_sent = true;
                }
                Poll::Ready(Some(Outgoing::Frame(frame)))
            }
            None => {
                self.done = true;
                if self.goaway_sent {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Outgoing::Abort))
                }
            }
        }
    }
}

struct StreamCodec;

impl tonic::codec::Codec for StreamCodec {
    type Encode = Outgoing;
    type Decode = StreamResponse;
    type Encoder = OutgoingEncoder;
    type Decoder =
        <tonic_prost::ProstCodec<StreamRequest, StreamResponse> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        OutgoingEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<StreamRequest, StreamResponse>::raw_decoder(Default::default())
    }
}

struct OutgoingEncoder;

impl tonic::codec::Encoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Outgoing,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        match item {
            Outgoing::Frame(frame) => prost::Message::encode(&frame, dst)
                .map_err(|e| tonic::Status::internal(e.to_string())),
            Outgoing::Abort => Err(tonic::Status::cancelled(
                "the stream was abandoned before its end",
            )),
        }
    }
}

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
        let mut req = tonic::Request::new(Requests {
            rx,
            goaway_sent: false,
            done: false,
        });
        let value = MetadataValue::try_from(request.as_str())
            .map_err(|e| ClientError::shape(method, format!("bad stream request: {e}")))?;
        req.metadata_mut()
            .insert(jumpstarter_protocol::metadata::REQUEST, value);
        let mut grpc = tonic::client::Grpc::with_origin(rpc.channel.clone(), rpc.channel.origin());
        grpc.ready()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let resp = grpc
            .streaming(
                req,
                http::uri::PathAndQuery::from_static(STREAM_PATH),
                StreamCodec,
            )
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

impl DriverStream {
    /// Sends `data` without copying it (the zero-copy form of a write).
    pub async fn send_data(&mut self, data: bytes::Bytes) -> io::Result<()> {
        self.io.send_data(data).await
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
