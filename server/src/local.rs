//! The local transport: drivers and workers on this node connect to its Unix
//! socket and exchange length-prefixed protobuf frames (see `proto/README.md`).
//! Each connection has a reader, which hands every batch of received ops to
//! the core under one lock, and a writer, which sends what the core encoded
//! into the connection's [`Outbox`] since its last write, in one write.
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
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::{system_error, NodeCore};
use crate::outbox::Outbox;

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
    let outbox = Arc::new(Outbox::new());
    let conn = lock(&core).add_local_conn(outbox.clone());
    let writer = tokio::spawn(write_loop(socket.clone(), outbox.clone()));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Decoded ops, handed to the core and drained; the vector is kept.
    let mut ops: Vec<v1::ClientOp> = Vec::new();
    'read: loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = socket.read_some(&mut buf) => n,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => crate::keep_awake::touch(),
        }
        loop {
            match frame::next_frame(&buf) {
                Ok(Some((body, used))) => {
                    // Merging appends to the kept vector.
                    let mut msg = v1::ClientMessage {
                        ops: std::mem::take(&mut ops),
                    };
                    let merged = msg.merge(&buf[body]);
                    ops = msg.ops;
                    if let Err(e) = merged {
                        refuse(
                            &core,
                            conn,
                            format!("malformed message from client: {e}"),
                            ops,
                        );
                        break 'read;
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
        // A burst is handed to the core a chunk at a time, with a yield in
        // between: the writers then send what the first chunk produced
        // (work for a worker, results for a caller) while the node goes
        // on with the rest, instead of after the whole read.
        // One drain for the whole read: the ops left are not moved down
        // after each chunk.
        let mut left = ops.drain(..);
        while left.len() > 0 {
            if !lock(&core).handle_ops(conn, left.by_ref().take(CHUNK_OPS)) {
                break 'read;
            }
            if left.len() > 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(left);
        if ops.capacity() > KEEP_OPS {
            ops = Vec::new();
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
    lock(&core).remove_conn(conn);
    // The core has let go of the outbox: the writer sends what is left.
    outbox.close();
    let _ = writer.await;
}

/// The reader's op vector is dropped once a burst grew it past this.
const KEEP_OPS: usize = 8192;

/// Ops handed to the core at once (see the read loop). Rust client → Rust
/// worker with 4,096 calls in flight: 73,000–106,000 calls/s when a whole
/// read (up to ~1,500 ops) went at once, 105,000–158,000/s in chunks of
/// 1,024 or 512 (benches/README.md, 2026-11-29 afternoon).
const CHUNK_OPS: usize = 1024;

/// Handle what arrived intact, then tell the client why it is cut off.
fn refuse(core: &Arc<Mutex<NodeCore>>, conn: u64, why: String, ops: Vec<v1::ClientOp>) {
    let mut core = lock(core);
    if !ops.is_empty() {
        core.handle_ops(conn, ops);
    }
    tracing::warn!(conn, %why, "closing client connection");
    core.reply_error_and_close(conn, system_error(v1::ErrorKind::InvalidArgument, why));
}

async fn write_loop(socket: Arc<LocalSocket>, outbox: Arc<Outbox>) {
    let mut spare = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut batch = outbox.take(spare).await;
        if !batch.is_empty() && socket.write_all(batch.frames(&mut out)).await.is_err() {
            return;
        }
        if batch.close {
            let _ = socket.shutdown_write();
            return;
        }
        spare = batch.into_buffer();
        if out.capacity() > 16 << 20 {
            out = Vec::new();
        }
    }
}

pub fn lock(core: &Arc<Mutex<NodeCore>>) -> std::sync::MutexGuard<'_, NodeCore> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}
