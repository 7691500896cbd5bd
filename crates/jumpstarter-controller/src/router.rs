//! `jumpstarter.v1.RouterService` (controller.md §7): pairs the two streams that present a
//! token for the same stream id and copies frames between them unchanged, in order, with
//! gRPC flow control as the only buffer. The first arrival waits (no timeout) until its
//! partner comes or it goes away; an end of stream on one side ends that direction only; an
//! error on either side ends both. A token is good for one pairing: a third stream with the
//! same token is refused.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use jumpstarter_protocol::v1::router_service_server::RouterService;
use jumpstarter_protocol::v1::{StreamRequest, StreamResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Keys, bearer};
use crate::scheduler::lock;

type Out = mpsc::Sender<Result<StreamResponse, Status>>;

struct Waiting {
    inbound: Streaming<StreamRequest>,
    out: Out,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<String, Waiting>,
    /// Stream ids that were paired already (their tokens are spent), with when; forgotten
    /// once the token has expired anyway.
    used: HashMap<String, std::time::Instant>,
}

pub struct RouterSvc {
    keys: Keys,
    pending: Arc<Mutex<Pending>>,
}

impl RouterSvc {
    pub fn new(keys: Keys) -> Self {
        RouterSvc {
            keys,
            pending: Default::default(),
        }
    }
}

/// Frames from one side to the other. Returns Err on a receive error (the peer broke off).
/// A receiver that went away (its call was cancelled or its connection lost) is an error too,
/// even while nothing flows towards it.
async fn pump(mut from: Streaming<StreamRequest>, to: Out) -> Result<(), Status> {
    loop {
        let msg = tokio::select! {
            m = from.next() => m,
            _ = to.closed() => return Err(Status::cancelled("peer went away")),
        };
        let Some(msg) = msg else { break };
        let msg = msg?;
        let frame = StreamResponse {
            payload: msg.payload,
            frame_type: msg.frame_type,
        };
        if to.send(Ok(frame)).await.is_err() {
            return Err(Status::cancelled("peer went away"));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl RouterService for RouterSvc {
    type StreamStream = Pin<Box<dyn Stream<Item = Result<StreamResponse, Status>> + Send>>;

    async fn stream(
        &self,
        request: Request<Streaming<StreamRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let token = bearer(request.metadata()).map_err(|e| {
            Status::unauthenticated(format!("missing or invalid authorization: {}", e.message()))
        })?;
        let id = self.keys.verify_router(&token)?;
        let inbound = request.into_inner();
        let (out, rx) = mpsc::channel(16);
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
                // First arrival: forget it when it goes away before its partner comes.
                let pending = self.pending.clone();
                tokio::spawn(async move {
                    out.closed().await;
                    let mut p = lock(&pending);
                    if p.waiting.get(&id).is_some_and(|w| w.out.is_closed()) {
                        p.waiting.remove(&id);
                    }
                });
            }
            Some((first, inbound)) => {
                tracing::debug!(stream = %id, "router streams paired");
                let second_out = out;
                tokio::spawn(async move {
                    let a = tokio::spawn(pump(first.inbound, second_out.clone()));
                    let b = tokio::spawn(pump(inbound, first.out.clone()));
                    let (ra, rb) = (a.abort_handle(), b.abort_handle());
                    // Either direction failing ends both; a clean end of one direction
                    // waits for the other.
                    let mut a = a;
                    let mut b = b;
                    let fail = tokio::select! {
                        r = &mut a => match r { Ok(Ok(())) => b.await.ok().and_then(Result::err), Ok(Err(e)) => Some(e), Err(_) => None },
                        r = &mut b => match r { Ok(Ok(())) => a.await.ok().and_then(Result::err), Ok(Err(e)) => Some(e), Err(_) => None },
                    };
                    ra.abort();
                    rb.abort();
                    if let Some(e) = fail {
                        tracing::debug!("router stream ended: {e}");
                        let _ = second_out.try_send(Err(Status::cancelled("peer stream ended")));
                        let _ = first
                            .out
                            .try_send(Err(Status::cancelled("peer stream ended")));
                    }
                });
            }
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
