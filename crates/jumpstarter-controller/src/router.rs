//! `jumpstarter.v1.RouterService` (controller.md §7): pairs the two streams that present a
//! token for the same stream id and copies frames between them unchanged, in order, with
//! HTTP/2 flow control as the only buffer. The first arrival waits until its partner comes,
//! it goes away, the pairing timeout passes (`limits.handshake_timeout`, DEADLINE_EXCEEDED) or
//! the lease ends; an end of stream on one side ends that direction only; an error on either
//! side ends both. A token is good for one pairing: a third stream with the same token is
//! refused. Streams of a lease (tokens minted by Dial name it) end when the lease ends,
//! waiting or paired ([`crate::dials`]).
//!
//! The service works one level below tonic's generated code: it relays the HTTP/2 DATA
//! bytes of one side's request body as the other side's response body, without decoding
//! them. That is sound because `StreamRequest` and `StreamResponse` have the same fields
//! with the same numbers and types, so a sequence of length-prefixed `StreamRequest`
//! messages is, byte for byte, a valid sequence of `StreamResponse` messages. It saves the
//! router a copy into tonic's decode buffer, a protobuf decode and an encode (one more
//! copy) per frame, and passes unknown fields through untouched. Compressed messages are
//! refused up front (no upstream client compresses): the relay could not re-announce the
//! sender's `grpc-encoding` on the receiver's response.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;

use crate::auth::bearer;
use crate::dials::Key;
use crate::scheduler::{Shared, lock};
use crate::text::clip;
use tokio_util::sync::CancellationToken;

/// The one method of the service.
const STREAM_PATH: &str = "/jumpstarter.v1.RouterService/Stream";

/// Frames buffered per direction on top of HTTP/2 flow control.
const RELAY_FRAMES: usize = 8;

/// How long the end of a pair waits for a side to take its final status.
const TRAILERS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The sending half of one side's response body.
type Out = mpsc::Sender<Frame<Bytes>>;

struct Waiting {
    inbound: Body,
    out: Out,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<String, Waiting>,
    /// Stream ids that were paired already (their tokens are spent), with when; forgotten
    /// once the token has expired anyway.
    used: HashMap<String, std::time::Instant>,
}

#[derive(Clone)]
pub struct RouterSvc {
    shared: Arc<Shared>,
    pending: Arc<Mutex<Pending>>,
}

impl RouterSvc {
    pub fn new(shared: Arc<Shared>) -> Self {
        RouterSvc {
            shared,
            pending: Default::default(),
        }
    }
}

/// One side's response ends with `status` (best effort: the side may be gone).
fn end_with(out: &Out, status: &Status) {
    let _ = out.try_send(Frame::trailers(trailers(status)));
}

impl NamedService for RouterSvc {
    const NAME: &'static str = "jumpstarter.v1.RouterService";
}

impl Service<http::Request<Body>> for RouterSvc {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let response = self.stream(req).unwrap_or_else(|s| s.into_http());
        Box::pin(async move { Ok(response) })
    }
}

/// The grpc-status trailers that end one side's response.
fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    // Only fails for a message that cannot be a header value; ours are plain ASCII.
    let _ = status.add_header(&mut map);
    map
}

/// Data from one side's request body to the other side's response body. Returns Err when
/// the sender broke off (reset, lost connection) or the receiver went away, even while
/// nothing flows towards it.
async fn pump(mut from: Body, to: Out) -> Result<(), Status> {
    loop {
        let frame = tokio::select! {
            f = from.frame() => f,
            _ = to.closed() => return Err(Status::cancelled("peer went away")),
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| Status::cancelled(format!("peer stream broke off: {e}")))?;
        // Trailers on a request body carry nothing for the other side.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if to.send(Frame::data(data)).await.is_err() {
            return Err(Status::cancelled("peer went away"));
        }
    }
    Ok(())
}

impl RouterSvc {
    fn stream(&self, req: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        if req.uri().path() != STREAM_PATH {
            return Err(Status::unimplemented(format!(
                "unknown method {}",
                clip(req.uri().path())
            )));
        }
        let md = MetadataMap::from_headers(req.headers().clone());
        let token = bearer(&md).map_err(|e| {
            Status::unauthenticated(format!("missing or invalid authorization: {}", e.message()))
        })?;
        let grant = self.shared.keys.verify_router(&token)?;
        let id = grant.stream;
        let lease: Option<Key> = grant.lease;
        // A stream of a lease lives no longer than the lease.
        let lease_end =
            match &lease {
                Some(key) => Some(self.shared.dials.lease_end(key).ok_or_else(|| {
                    Status::unavailable(format!("lease {} has ended", clip(&key.1)))
                })?),
                None => None,
            };
        let lease_end = lease_end.unwrap_or_default();
        if let Some(enc) = req.headers().get("grpc-encoding")
            && enc.as_bytes() != b"identity"
        {
            return Err(Status::unimplemented(
                "the router relays uncompressed messages only (grpc-encoding identity)",
            ));
        }
        let inbound = req.into_body();
        let (out, rx) = mpsc::channel(RELAY_FRAMES);
        let partner = {
            let mut p = lock(&self.pending);
            if p.used.contains_key(&id) {
                return Err(Status::unauthenticated("invalid jwt token: already used"));
            }
            match p.waiting.remove(&id) {
                Some(w) if !w.out.is_closed() => {
                    let now = std::time::Instant::now();
                    p.used.retain(|_, at| {
                        now.duration_since(*at) < crate::auth::ROUTER_TOKEN_LIFETIME
                    });
                    p.used.insert(id.clone(), now);
                    Some((w, inbound))
                }
                _ => {
                    p.waiting.insert(
                        id.clone(),
                        Waiting {
                            inbound,
                            out: out.clone(),
                        },
                    );
                    None
                }
            }
        };
        match partner {
            None => {
                // First arrival: it waits for its partner for the pairing timeout at most,
                // and no longer than the lease; forget it when it goes away first.
                let (pending, shared) = (self.pending.clone(), self.shared.clone());
                let timeout = self.shared.limits.handshake_timeout;
                tokio::spawn(async move {
                    let why = tokio::select! {
                        _ = out.closed() => None,
                        _ = tokio::time::sleep(timeout) => Some(Status::deadline_exceeded(format!(
                            "no partner joined this router stream within {:.1} s \
                             (JMP_HANDSHAKE_TIMEOUT)",
                            timeout.as_secs_f64()
                        ))),
                        _ = lease_end.cancelled() => Some(Status::cancelled("the lease has ended")),
                    };
                    // Still waiting (not paired meanwhile)? Then it is ours to end.
                    let waiting = {
                        let mut p = lock(&pending);
                        if p.waiting.get(&id).is_some_and(|w| w.out.same_channel(&out)) {
                            p.waiting.remove(&id)
                        } else {
                            None
                        }
                    };
                    if let Some(w) = waiting {
                        if let Some(why) = &why {
                            tracing::debug!(stream = %id, "unpaired router stream ended: {}", why.message());
                            end_with(&w.out, why);
                        }
                        if let Some(key) = &lease {
                            shared.dials.settle(key, &id);
                        }
                    }
                });
            }
            Some((first, inbound)) => {
                tracing::debug!(stream = %id, "router streams paired");
                if let Some(key) = &lease {
                    self.shared.dials.settle(key, &id);
                }
                tokio::spawn(relay(first, inbound, out, lease_end));
            }
        }
        let body = StreamBody::new(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
        let mut response = http::Response::new(Body::new(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        Ok(response)
    }
}

/// Both directions of a pair until both have ended or one has failed; then each side's
/// response ends with its grpc-status.
async fn relay(first: Waiting, second_in: Body, second_out: Out, lease_end: CancellationToken) {
    let mut a = tokio::spawn(pump(first.inbound, second_out.clone()));
    let mut b = tokio::spawn(pump(second_in, first.out.clone()));
    let (ra, rb) = (a.abort_handle(), b.abort_handle());
    // Either direction failing ends both; a clean end of one direction waits for the other.
    let both = async {
        tokio::select! {
            r = &mut a => match r { Ok(Ok(())) => (&mut b).await.ok().and_then(Result::err), Ok(Err(e)) => Some(e), Err(_) => None },
            r = &mut b => match r { Ok(Ok(())) => (&mut a).await.ok().and_then(Result::err), Ok(Err(e)) => Some(e), Err(_) => None },
        }
    };
    // The lease's end ends the pair too.
    let fail = tokio::select! {
        f = both => f,
        _ = lease_end.cancelled() => Some(Status::cancelled("the lease has ended")),
    };
    ra.abort();
    rb.abort();
    let end = match fail {
        Some(e) => {
            tracing::debug!("router stream ended: {e}");
            Status::cancelled("peer stream ended")
        }
        None => Status::ok(""),
    };
    // A side that reads on gets its status after the frames before it; one that stopped
    // reading (or is gone) does not hold the other up for long.
    let finish = |out: Out| {
        let frame = Frame::trailers(trailers(&end));
        async move {
            let _ = tokio::time::timeout(TRAILERS_WAIT, out.send(frame)).await;
        }
    };
    tokio::join!(finish(second_out), finish(first.out));
}
