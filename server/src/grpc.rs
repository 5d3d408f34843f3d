//! The node's TCP port: `NodeService` (remote client streams, status,
//! shutdown), `HeadService` (when the head runs here) and the object store's
//! Arrow Flight service, all behind one token check.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use ember_flight_store::FlightStoreService;
use ember_proto::v1::node_service_server::NodeServiceServer;
use ember_proto::v1::{
    self, head_service_server::HeadServiceServer, node_service_server::NodeService,
};
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::head::{Head, HeadServiceImpl};
use crate::local::lock;
use crate::node::{NodeCore, Outgoing};

/// Largest gRPC message accepted (Flight batches and task batches).
const MAX_MESSAGE_BYTES: usize = 512 << 20;

/// Refuses calls without `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Arc<str>,
}

impl TokenCheck {
    pub fn new(token: &str) -> Self {
        Self {
            expected: format!("Bearer {token}").into(),
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
            Some(v) if v.as_bytes() == self.expected.as_bytes() => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong cluster token")),
            None => Err(Status::unauthenticated(
                "missing cluster token: send `authorization: Bearer <token>` (the token is in the session file)",
            )),
        }
    }
}

pub struct NodeServiceImpl {
    pub core: Arc<Mutex<NodeCore>>,
    pub shutdown: CancellationToken,
}

type NodeStream = Pin<Box<dyn Stream<Item = Result<v1::NodeMessage, Status>> + Send>>;

#[tonic::async_trait]
impl NodeService for NodeServiceImpl {
    type OpenStreamStream = NodeStream;

    async fn open_stream(
        &self,
        req: Request<Streaming<v1::ClientMessage>>,
    ) -> Result<Response<Self::OpenStreamStream>, Status> {
        let mut incoming = req.into_inner();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let conn = lock(&self.core).add_remote_conn(tx);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        // Batch what the core queued into one NodeMessage per wake-up; end
        // the stream when the node shuts down (a graceful server shutdown
        // waits for open streams).
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    first = rx.recv() => match first {
                        Some(first) => first,
                        None => return,
                    },
                };
                let (msg, close) = gather(first, &mut rx);
                if !msg.ops.is_empty() && out_tx.send(Ok(msg)).is_err() {
                    return;
                }
                if close {
                    return;
                }
            }
        });
        let core = self.core.clone();
        let (store, inline, wait) = store_settings(&core);
        tokio::spawn(async move {
            while let Some(Ok(mut msg)) = incoming.next().await {
                for op in &mut msg.ops {
                    if let Some(v1::client_op::Op::PutObject(put)) = &mut op.op {
                        store_large_put(&store, &core, conn, put, inline, wait).await;
                    }
                }
                if !lock(&core).handle_ops(conn, msg.ops) {
                    break;
                }
            }
            lock(&core).remove_conn(conn);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            out_rx,
        ))))
    }

    async fn get_cluster_status(
        &self,
        _req: Request<v1::GetClusterStatusRequest>,
    ) -> Result<Response<v1::GetClusterStatusResponse>, Status> {
        let (mut status, jobs) = {
            let core = lock(&self.core);
            (core.cluster_status(), core.request_jobs())
        };
        // The head's job table (the head may be away: status goes on without it).
        if let Some(rx) = jobs {
            if let Ok(Ok(Ok(jobs))) =
                tokio::time::timeout(std::time::Duration::from_secs(2), rx).await
            {
                status.jobs = jobs;
            }
        }
        Ok(Response::new(v1::GetClusterStatusResponse {
            status: Some(status),
        }))
    }

    async fn shutdown(
        &self,
        _req: Request<v1::ShutdownRequest>,
    ) -> Result<Response<v1::ShutdownResponse>, Status> {
        tracing::info!("shutdown requested over gRPC");
        self.shutdown.cancel();
        Ok(Response::new(v1::ShutdownResponse {}))
    }
}

/// The node's store, its inline limit and how long a put waits for room.
fn store_settings(
    core: &Arc<Mutex<NodeCore>>,
) -> (Arc<ember_flight_store::Store>, usize, std::time::Duration) {
    let c = lock(core);
    let cfg = c.config();
    (
        c.store().clone(),
        cfg.max_inline_bytes as usize,
        cfg.object_store_wait,
    )
}

/// A put received by value on a gRPC stream that is over the node's inline
/// limit: its bytes are copied into a block of the arena here, off the
/// core's lock (waiting for room as a local client's create does), and the
/// op becomes the `PutObject{shm}` a local client would have sent. A store
/// that stays full makes the object an `OBJECT_STORE_FULL` error value.
async fn store_large_put(
    store: &Arc<ember_flight_store::Store>,
    core: &Arc<Mutex<NodeCore>>,
    conn: u64,
    put: &mut v1::PutObject,
    inline: usize,
    wait: std::time::Duration,
) {
    use v1::object_value::Body;
    let Some(value) = put.value.as_mut() else {
        return;
    };
    let Some(Body::InlineData(data)) = &value.body else {
        return;
    };
    if data.len() <= inline {
        return;
    }
    let Ok(id) = ember_proto::ObjectId::from_bytes(&put.object_id) else {
        return; // the core refuses the malformed id
    };
    let data = data.clone();
    let size = data.len();
    let deadline = tokio::time::Instant::now() + wait;
    let written = match store.writer_waiting(id, size as u64, deadline).await {
        Ok(mut writer) => tokio::task::spawn_blocking(move || {
            writer.write(&data)?;
            writer.into_unsealed()
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    match written {
        Ok(location) => {
            if lock(core).adopt_block(conn, id) {
                value.body = Some(Body::Shm(location));
            }
        }
        Err(e) => {
            let err = crate::node::system_error(
                v1::ErrorKind::ObjectStoreFull,
                format!(
                    "object {id}: a put of {size} bytes over the gRPC stream found no room: {e}"
                ),
            );
            *value = crate::node::error_value(&err);
        }
    }
}

/// Serve every gRPC service on `listener` until `shutdown`.
pub async fn serve_grpc(
    listener: TcpListener,
    core: Arc<Mutex<NodeCore>>,
    head: Option<Arc<Head>>,
    token: &str,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let check = TokenCheck::new(token);
    let (store, inline, wait) = store_settings(&core);
    let node = NodeServiceServer::new(NodeServiceImpl {
        core: core.clone(),
        shutdown: shutdown.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let node = InterceptedService::new(node, check.clone());
    let flight = InterceptedService::new(
        FlightStoreService::new(store, inline)
            .with_put_timeout(wait)
            .into_server(),
        check.clone(),
    );
    let mut router = tonic::transport::Server::builder()
        .add_service(node)
        .add_service(flight);
    if let Some(head) = head {
        router = router.add_service(HeadServiceServer::with_interceptor(
            HeadServiceImpl(head),
            check,
        ));
    }
    router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
}

/// Everything queued for a gRPC stream right now, as one message, stopping
/// once the ops gathered encode to [`MAX_GATHER_BYTES`] or more (values
/// sent by value can be large, and a message must stay under the stream's
/// limit).
fn gather(first: Outgoing, rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> (v1::NodeMessage, bool) {
    let mut msg = v1::NodeMessage::default();
    let mut close = false;
    let mut bytes = 0usize;
    let mut next = Some(first);
    while let Some(item) = next {
        match item {
            Outgoing::Op(op) => msg.ops.push(op),
            Outgoing::Close => {
                close = true;
                break;
            }
        }
        if msg.ops.len() >= 4096 {
            break;
        }
        bytes += msg.ops.last().map_or(0, |op| op.encoded_len());
        if bytes >= MAX_GATHER_BYTES {
            break;
        }
        next = rx.try_recv().ok();
    }
    (msg, close)
}

/// A gRPC stream's message gathers no more ops once this many bytes of
/// them are in it.
const MAX_GATHER_BYTES: usize = 64 << 20;
