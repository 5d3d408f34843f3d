//! The local transport: drivers and workers on this node connect to its Unix
//! socket and exchange length-prefixed protobuf frames (see `proto/README.md`).
//! Each connection has a reader, which hands every batch of received ops to
//! the core under one lock, and a writer, which drains the connection's
//! channel into one frame per wake-up.
//!
//! The socket is an [`ember_proto::local_socket::LocalSocket`]: registered
//! for reading only, so a client reading what the node sent does not wake
//! the node.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use ember_proto::frame;
use ember_proto::local_socket::LocalSocket;
use ember_proto::v1;
use prost::Message;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::{system_error, NodeCore, Outgoing};

pub async fn serve_local(
    listener: UnixListener,
    core: Arc<Mutex<NodeCore>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept on the local socket failed");
                    continue;
                }
            },
        };
        let core = core.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move { handle_conn(stream, core, shutdown).await });
    }
}

async fn handle_conn(
    stream: tokio::net::UnixStream,
    core: Arc<Mutex<NodeCore>>,
    shutdown: CancellationToken,
) {
    let socket = match LocalSocket::from_tokio(stream) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot register a local connection");
            return;
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let conn = lock(&core).add_conn(tx);
    let writer = tokio::spawn(write_loop(socket.clone(), rx));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = socket.read_some(&mut buf) => n,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => crate::keep_awake::touch(),
        }
        let mut ops = Vec::new();
        loop {
            match frame::next_frame(&buf) {
                Ok(Some((body, used))) => {
                    match v1::ClientMessage::decode(&buf[body]) {
                        // One frame per read is the common case: take its
                        // vector rather than move every op into another.
                        Ok(msg) if ops.is_empty() => ops = msg.ops,
                        Ok(msg) => ops.extend(msg.ops),
                        Err(e) => {
                            refuse(
                                &core,
                                conn,
                                format!("malformed message from client: {e}"),
                                ops,
                            );
                            break 'read;
                        }
                    }
                    let _ = buf.split_to(used);
                }
                Ok(None) => break,
                Err(e) => {
                    refuse(&core, conn, e.to_string(), ops);
                    break 'read;
                }
            }
        }
        if !ops.is_empty() && !lock(&core).handle_ops(conn, ops) {
            break;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
    lock(&core).remove_conn(conn);
    let _ = writer.await;
}

/// Handle what arrived intact, then tell the client why it is cut off.
fn refuse(core: &Arc<Mutex<NodeCore>>, conn: u64, why: String, ops: Vec<v1::ClientOp>) {
    let mut core = lock(core);
    if !ops.is_empty() {
        core.handle_ops(conn, ops);
    }
    tracing::warn!(conn, %why, "closing client connection");
    core.reply_error_and_close(conn, system_error(v1::ErrorKind::InvalidArgument, why));
}

async fn write_loop(socket: Arc<LocalSocket>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let (msg, close) = gather(first, &mut rx);
        out.clear();
        if !msg.ops.is_empty() {
            frame::encode_frame(&msg, &mut out);
            if socket.write_all(&out).await.is_err() {
                return;
            }
        }
        if close {
            let _ = socket.shutdown_write();
            return;
        }
        if out.capacity() > 16 << 20 {
            out = Vec::with_capacity(64 * 1024);
        }
    }
}

/// Everything queued for a connection right now, as one message.
pub fn gather(
    first: Outgoing,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> (v1::NodeMessage, bool) {
    gather_at_most(first, rx, None)
}

/// [`gather`], stopping once the ops gathered encode to `max_bytes` or more
/// (gRPC streams: values sent by value can be large, and a message must
/// stay under the stream's limit).
pub fn gather_at_most(
    first: Outgoing,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    max_bytes: Option<usize>,
) -> (v1::NodeMessage, bool) {
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
        if let Some(max) = max_bytes {
            bytes += msg.ops.last().map_or(0, |op| op.encoded_len());
            if bytes >= max {
                break;
            }
        }
        next = rx.try_recv().ok();
    }
    (msg, close)
}

/// A gRPC stream's message gathers no more ops once this many bytes of
/// them are in it.
pub const MAX_GATHER_BYTES: usize = 64 << 20;

pub fn lock(core: &Arc<Mutex<NodeCore>>) -> std::sync::MutexGuard<'_, NodeCore> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}
