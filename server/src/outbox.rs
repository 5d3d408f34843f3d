//! What the node has to send one local connection, already encoded.
//!
//! The core encodes each op straight into the connection's buffer as a
//! `NodeMessage.ops` entry (a `NodeMessage` is its ops' entries one after
//! another), and the connection's writer sends the buffer as it stands (its
//! first bytes left for the frame length), or cut into frames when large.
//! No op is moved through a channel or gathered into a vector first, and
//! a batch is not copied to be framed: at tens of thousands of ops a second
//! those moves and the vectors' growth were a tenth of the node's CPU.

use std::sync::Mutex;

use ember_proto::frame::MAX_FRAME_BYTES;
use ember_proto::v1::NodeOp;
use prost::encoding::{decode_varint, encode_key, encode_varint, WireType};
use prost::Message;
use tokio::sync::Notify;

/// The `ops` field of `NodeMessage`.
const OPS_FIELD: u32 = 1;

/// A frame's body stays under this many bytes when it holds more than one
/// op, so that a reader is handed a burst in pieces it can start on.
const FRAME_TARGET_BYTES: usize = 4 << 20;

/// A buffer kept between writes is dropped once it has grown past this.
const KEEP_CAPACITY: usize = 16 << 20;

/// Room for a frame's length at the start of every buffer: a batch that
/// makes one frame is written as it lies, its length filled in.
const HEADER: usize = 4;

pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
}

struct State {
    /// [`HEADER`] bytes, then encoded `NodeMessage.ops` entries, oldest first.
    buf: Vec<u8>,
    /// Close the connection once `buf` is sent.
    close: bool,
}

/// What a writer takes from the outbox at once.
pub struct Batch {
    /// [`HEADER`] bytes, then the entries.
    bytes: Vec<u8>,
    pub close: bool,
}

impl Batch {
    /// No op in it (a close alone).
    pub fn is_empty(&self) -> bool {
        self.bytes.len() == HEADER
    }

    /// The encoded entries (a `NodeMessage`'s bytes).
    pub fn entries(&self) -> &[u8] {
        &self.bytes[HEADER..]
    }

    /// The frames to write: the batch itself with its length filled in
    /// when its entries make one frame (the usual case), else the entries
    /// cut into frames in `out` (see [`frame_into`]).
    pub fn frames<'a>(&'a mut self, out: &'a mut Vec<u8>) -> &'a [u8] {
        let body = self.bytes.len() - HEADER;
        if body <= FRAME_TARGET_BYTES {
            self.bytes[..HEADER].copy_from_slice(&(body as u32).to_le_bytes());
            return &self.bytes;
        }
        frame_into(&self.bytes[HEADER..], out);
        out
    }

    /// The buffer, for [`Outbox::take`] to reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                buf: vec![0; HEADER],
                close: false,
            }),
            ready: Notify::new(),
        }
    }

    /// Queue one op. Nothing is queued after a close.
    pub fn push(&self, op: &NodeOp) {
        let mut s = self.lock();
        if s.close {
            return;
        }
        let wake = s.buf.len() == HEADER;
        encode_key(OPS_FIELD, WireType::LengthDelimited, &mut s.buf);
        encode_varint(op.encoded_len() as u64, &mut s.buf);
        op.encode_raw(&mut s.buf);
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Close the connection after what is queued.
    pub fn close(&self) {
        self.lock().close = true;
        self.ready.notify_one();
    }

    /// Wait until something is queued (or a close), then take it all;
    /// `spare` (emptied) becomes the outbox's next buffer.
    pub async fn take(&self, spare: Vec<u8>) -> Batch {
        let mut spare = spare;
        loop {
            match self.try_take(spare) {
                Ok(batch) => return batch,
                Err(back) => spare = back,
            }
            self.ready.notified().await;
        }
    }

    /// [`Outbox::take`] without waiting: `spare` back when nothing is queued.
    pub fn try_take(&self, spare: Vec<u8>) -> Result<Batch, Vec<u8>> {
        let mut s = self.lock();
        if s.buf.len() == HEADER && !s.close {
            return Err(spare);
        }
        let mut next = spare;
        next.clear();
        if next.capacity() > KEEP_CAPACITY {
            next = Vec::new();
        }
        next.resize(HEADER, 0);
        Ok(Batch {
            bytes: std::mem::replace(&mut s.buf, next),
            close: s.close,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frame the entries in `bytes` into `out`: a 4-byte little-endian length
/// and a body per frame. Frames are cut between entries, near
/// [`FRAME_TARGET_BYTES`]; an entry larger than that goes alone.
fn frame_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(bytes.len() + 4 * (1 + bytes.len() / FRAME_TARGET_BYTES));
    let mut start = 0;
    while start < bytes.len() {
        let mut end = start;
        while end < bytes.len() {
            let next = end + entry_len(&bytes[end..]);
            if end > start && next - start > FRAME_TARGET_BYTES {
                break;
            }
            end = next;
        }
        let body = &bytes[start..end];
        debug_assert!(body.len() <= MAX_FRAME_BYTES);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        start = end;
    }
}

/// The length of the entry that `bytes` starts with (key, length, op).
fn entry_len(bytes: &[u8]) -> usize {
    // The key of field 1, length-delimited, is the single byte 0x0a.
    let mut rest = &bytes[1..];
    let before = rest.len();
    let len = decode_varint(&mut rest).expect("outbox entries are well formed") as usize;
    1 + (before - rest.len()) + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_proto::frame::next_frame;
    use ember_proto::v1::{self, node_op, NodeMessage};

    fn warning(text: &str) -> NodeOp {
        NodeOp {
            op: Some(node_op::Op::Warning(v1::Warning {
                message: text.into(),
            })),
        }
    }

    fn decode_all(mut framed: &[u8]) -> Vec<NodeOp> {
        let mut ops = Vec::new();
        while !framed.is_empty() {
            let (body, used) = next_frame(framed).unwrap().unwrap();
            ops.extend(NodeMessage::decode(&framed[body]).unwrap().ops);
            framed = &framed[used..];
        }
        ops
    }

    #[tokio::test]
    async fn ops_arrive_as_a_node_message_in_order_and_close_comes_last() {
        let outbox = Outbox::new();
        let sent: Vec<NodeOp> = (0..100).map(|i| warning(&format!("op {i}"))).collect();
        for op in &sent {
            outbox.push(op);
        }
        outbox.close();
        outbox.push(&warning("after close"));
        let mut batch = outbox.take(Vec::new()).await;
        assert!(batch.close);
        let mut out = Vec::new();
        let framed = batch.frames(&mut out).to_vec();
        assert_eq!(decode_all(&framed), sent);
        // One frame: the same bytes prost makes for the whole message.
        let whole = NodeMessage { ops: sent }.encode_to_vec();
        assert_eq!(&framed[4..], &whole[..]);
    }

    #[tokio::test]
    async fn take_waits_for_a_push() {
        let outbox = std::sync::Arc::new(Outbox::new());
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.take(Vec::new()).await.entries().to_vec() }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        outbox.push(&warning("hi"));
        let bytes = waiter.await.unwrap();
        assert_eq!(
            NodeMessage::decode(&bytes[..]).unwrap().ops,
            vec![warning("hi")]
        );
    }

    #[test]
    fn a_large_burst_is_cut_into_frames_between_ops() {
        let outbox = Outbox::new();
        let big = "x".repeat(FRAME_TARGET_BYTES / 3);
        let huge = "y".repeat(FRAME_TARGET_BYTES + 10);
        let sent = vec![
            warning(&big),
            warning(&big),
            warning(&big),
            warning(&huge),
            warning("z"),
        ];
        for op in &sent {
            outbox.push(op);
        }
        let mut batch = outbox.try_take(Vec::new()).ok().unwrap();
        let mut out = Vec::new();
        let framed = batch.frames(&mut out).to_vec();
        let mut frames = 0;
        let mut rest = &framed[..];
        while !rest.is_empty() {
            let (_, used) = next_frame(rest).unwrap().unwrap();
            frames += 1;
            rest = &rest[used..];
        }
        // [big, big] [big] [huge] [z]: the third big one would pass the target.
        assert_eq!(frames, 4);
        assert_eq!(decode_all(&framed), sent);
    }
}
