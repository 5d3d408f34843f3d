//! Membership: how a node takes part in a cluster.
//!
//! - On the head's node, [`run_head_monitor`] reports the node to the
//!   in-process head every heartbeat interval, declares silent nodes dead
//!   and hands the node core the head's list of nodes.
//! - On any other node, [`join_cluster`] registers with the head over gRPC
//!   (`HeadService.RegisterNode`, with the cluster token), then heartbeats
//!   its current `NodeInfo`; each answer is the cluster view. When the head
//!   cannot be reached, or has declared this node dead, it retries with
//!   backoff and registers again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_proto::v1::{self, head_service_client::HeadServiceClient};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::head::Head;
use crate::local::lock;
use crate::node::NodeCore;

/// The longest wait between two attempts to reach the head.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Adds the cluster token to every call.
#[derive(Clone)]
pub struct Bearer(pub tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type HeadClient = HeadServiceClient<InterceptedService<Channel, Bearer>>;

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The head refused the token: retrying would not help.
    #[error("the head at {address} refused this node: {message} (check --token / EMBER_TOKEN)")]
    Refused { address: String, message: String },
    #[error("cannot reach the head at {address}: {message}")]
    Unreachable { address: String, message: String },
}

/// Keep the in-process head informed about this node and the node about
/// the cluster, until `shutdown`.
pub async fn run_head_monitor(
    core: Arc<Mutex<NodeCore>>,
    head: Arc<Head>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(head.heartbeat_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let me = lock(&core).node_info();
        if head.heartbeat(me.clone()).is_err() {
            head.register_node(me);
        }
        head.check_liveness(Instant::now());
        lock(&core).set_cluster_view(head.nodes());
    }
}

/// Register with the head once: the client to heartbeat with, and the
/// interval the head expects.
pub async fn register(
    core: &Arc<Mutex<NodeCore>>,
    address: &str,
    token: &str,
) -> Result<(HeadClient, Duration), JoinError> {
    let unreachable = |message: String| JoinError::Unreachable {
        address: address.to_string(),
        message,
    };
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| JoinError::Refused {
            address: address.to_string(),
            message: "the token has characters a header cannot carry".into(),
        })?;
    let mut client = HeadServiceClient::with_interceptor(channel, Bearer(auth));
    let node = lock(core).node_info();
    let reply = client
        .register_node(v1::RegisterNodeRequest { node: Some(node) })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => JoinError::Refused {
                address: address.to_string(),
                message: status.message().to_string(),
            },
            _ => unreachable(status.message().to_string()),
        })?
        .into_inner();
    let interval = Duration::from_millis(reply.heartbeat_interval_ms.clamp(10, 60_000));
    tracing::info!(head = %address, ?interval, "joined the cluster");
    Ok((client, interval))
}

/// Stay a member of the cluster whose head is at `address` until
/// `shutdown`: heartbeat, and register again whenever the head is lost.
/// `joined` is the first registration, when it succeeded at start-up.
pub async fn join_cluster(
    core: Arc<Mutex<NodeCore>>,
    address: String,
    token: String,
    joined: Option<(HeadClient, Duration)>,
    shutdown: CancellationToken,
) {
    let mut joined = joined;
    let mut backoff = Duration::from_millis(100);
    loop {
        let (mut client, interval) = match joined.take() {
            Some(j) => j,
            None => match register(&core, &address, &token).await {
                Ok(j) => j,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "not a member of the cluster yet");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let node = lock(&core).node_info();
            let beat = v1::HeartbeatRequest {
                node_id: node.node_id.clone(),
                resources_available: node.resources_available.clone(),
                node: Some(node),
                ..Default::default()
            };
            match client.heartbeat(beat).await {
                Ok(reply) => lock(&core).set_cluster_view(reply.into_inner().nodes),
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "heartbeat failed: joining again");
                    break;
                }
            }
        }
    }
}
