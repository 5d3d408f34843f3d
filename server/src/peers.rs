//! Peers: this node's connections to the other nodes, for the node core.
//!
//! The core never does IO; it queues [`PeerCommand`]s. For each node it
//! sends work to, [`run_peers`] keeps one `NodeService.OpenStream` (with
//! the cluster token), the same stream a remote client uses: ops go out on
//! it, and what comes back is handed to the core (`peer_message`); when it
//! breaks, the core hears `peer_lost`. Returns too large to travel inline
//! are pulled over the other node's Arrow Flight service (`raw:` ticket)
//! into this node's store (`peer_pulled`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Ticket;
use bytes::Bytes;
use ember_flight_store::Store;
use ember_proto::v1::{self, node_service_client::NodeServiceClient};
use ember_proto::{NodeId, ObjectId};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::local::lock;
use crate::membership::Bearer;
use crate::node::NodeCore;

/// Largest message on a stream to another node (task arguments travel
/// inline in it).
const MAX_MESSAGE_BYTES: usize = 512 << 20;
/// HTTP/2 receive window of a pull.
const PULL_WINDOW_BYTES: u32 = 32 << 20;
/// HTTP/2 frames of up to 1 MiB from the sending node (the default is
/// 16 KiB): per 100 MB pulled the receiver then handles 100 frames instead
/// of 6,400, and its CPU per pull drops by a third (1.1 -> 1.5-1.8 GB/s).
const PULL_FRAME_BYTES: u32 = 1 << 20;

/// What the core asks of the peers task.
#[derive(Debug)]
pub enum PeerCommand {
    /// Send ops on the stream to `node` (opened on first use).
    Send {
        node: NodeId,
        address: String,
        ops: Vec<v1::ClientOp>,
    },
    /// Copy the object `id` (a return of a task that ran on `node`) into
    /// this node's store.
    Pull {
        node: NodeId,
        address: String,
        id: ObjectId,
        format: i32,
        metadata: Bytes,
        size: u64,
    },
}

/// Serve the core's peer commands until `shutdown`.
pub async fn run_peers(
    core: Arc<Mutex<NodeCore>>,
    store: Arc<Store>,
    token: String,
    inline_threshold: usize,
    mut commands: mpsc::UnboundedReceiver<PeerCommand>,
    shutdown: CancellationToken,
) {
    let mut links: HashMap<NodeId, mpsc::UnboundedSender<v1::ClientMessage>> = HashMap::new();
    loop {
        let command = tokio::select! {
            _ = shutdown.cancelled() => return,
            command = commands.recv() => match command {
                Some(c) => c,
                None => return,
            },
        };
        match command {
            PeerCommand::Send { node, address, ops } => {
                let link = match links.get(&node) {
                    Some(link) if !link.is_closed() => link.clone(),
                    _ => {
                        let link = open_link(core.clone(), node, address, token.clone());
                        links.insert(node, link.clone());
                        link
                    }
                };
                let _ = link.send(v1::ClientMessage { ops });
            }
            PeerCommand::Pull {
                node,
                address,
                id,
                format,
                metadata,
                size,
            } => {
                let (core, store, token) = (core.clone(), store.clone(), token.clone());
                tokio::spawn(async move {
                    let pulled = pull(
                        &store,
                        &address,
                        &token,
                        id,
                        format,
                        metadata,
                        size,
                        inline_threshold,
                    )
                    .await
                    .map_err(|e| e.to_string());
                    lock(&core).peer_pulled(node, id, pulled);
                });
            }
        }
    }
}

/// Open the stream to `node`; the returned sender feeds it.
fn open_link(
    core: Arc<Mutex<NodeCore>>,
    node: NodeId,
    address: String,
    token: String,
) -> mpsc::UnboundedSender<v1::ClientMessage> {
    let (tx, rx) = mpsc::unbounded_channel();
    let me = lock(&core).node_id;
    tokio::spawn(async move {
        let hello = v1::ClientMessage {
            ops: vec![v1::ClientOp {
                op: Some(v1::client_op::Op::Hello(v1::Hello {
                    token: token.clone(),
                    kind: v1::ClientKind::Driver as i32,
                    pid: std::process::id(),
                    language: v1::Language::Python as i32,
                    namespace: "ember-peer".into(),
                    peer_node_id: me.to_vec().into(),
                    ..Default::default()
                })),
            }],
        };
        // The request stream ends with the response, so that neither node
        // waits for the other when it shuts down.
        let done = CancellationToken::new();
        let outgoing = futures::stream::once(async move { hello })
            .chain(UnboundedReceiverStream::new(rx))
            .take_until(done.clone().cancelled_owned());
        let result: anyhow::Result<()> = async {
            let channel = Endpoint::from_shared(format!("http://{address}"))?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await?;
            let auth = format!("Bearer {token}").parse()?;
            let mut client = NodeServiceClient::with_interceptor(channel, Bearer(auth))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let mut incoming = client.open_stream(outgoing).await?.into_inner();
            while let Some(msg) = incoming.message().await? {
                lock(&core).peer_message(node, msg.ops);
            }
            Ok(())
        }
        .await;
        done.cancel();
        let why = match result {
            Ok(()) => "its stream ended".to_string(),
            Err(e) => format!("{e:#}"),
        };
        lock(&core).peer_lost(node, &why);
    });
    tx
}

/// Copy an object from the node at `address` into `store`.
#[allow(clippy::too_many_arguments)]
async fn pull(
    store: &Store,
    address: &str,
    token: &str,
    id: ObjectId,
    format: i32,
    metadata: Bytes,
    size: u64,
    inline_threshold: usize,
) -> anyhow::Result<()> {
    if store.contains(&id) {
        return Ok(());
    }
    // Large HTTP/2 windows: with the default 64 KiB the sender stalls on
    // window updates and a pull runs at a fraction of the loopback speed.
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(PULL_WINDOW_BYTES)
        .initial_connection_window_size(PULL_WINDOW_BYTES)
        .max_frame_size(PULL_FRAME_BYTES)
        .connect()
        .await?;
    let auth = format!("Bearer {token}").parse()?;
    let mut client = FlightServiceClient::with_interceptor(channel, Bearer(auth))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut ticket = ember_flight_store::flight::RAW_TICKET_PREFIX.to_vec();
    ticket.extend_from_slice(id.hex().as_bytes());
    let response = client
        .do_get(Ticket {
            ticket: ticket.into(),
        })
        .await?
        .into_inner();
    let mut batches = FlightRecordBatchStream::new_from_flight_data(
        response.map_err(arrow_flight::error::FlightError::from),
    );
    // Small values go inline; large ones straight into a block of the arena.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut small = Vec::new();
    let mut writer = if size as usize > inline_threshold {
        Some(store.writer_waiting(id, size, deadline).await?)
    } else {
        None
    };
    let mut received = 0u64;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::BinaryArray>()
            .ok_or_else(|| anyhow::anyhow!("object {id}: a raw pull sent a non-binary column"))?;
        for value in column.iter().flatten() {
            received += value.len() as u64;
            anyhow::ensure!(
                received <= size,
                "object {id}: more than {size} bytes pulled"
            );
            match writer.as_mut() {
                Some(writer) => writer.write(value)?,
                None => small.extend_from_slice(value),
            }
        }
        // Batches already buffered (up to the stream window) would
        // otherwise be copied one after another without giving the
        // runtime's thread to anything else (the heartbeat among them).
        tokio::task::yield_now().await;
    }
    anyhow::ensure!(
        received == size,
        "object {id}: pulled {received} bytes, expected {size}"
    );
    match writer {
        Some(writer) => writer.finish(store, format, metadata)?,
        None => store.put_inline(id, format, metadata, Bytes::from(small))?,
    }
    Ok(())
}
