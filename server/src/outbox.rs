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
use ember_proto::v1::{ExecuteTask, NodeOp, TaskSpec};
use prost::encoding::{decode_varint, encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use tokio::sync::Notify;

/// The `ops` field of `NodeMessage`.
const OPS_FIELD: u32 = 1;

/// `NodeOp.execute_task` and `ExecuteTask.spec` (keys of one byte each).
const EXECUTE_TASK_OP: u32 = 3;
const EXECUTE_SPEC_FIELD: u32 = 1;

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
        self.push_entry(|buf| {
            encode_key(OPS_FIELD, WireType::LengthDelimited, buf);
            encode_varint(op.encoded_len() as u64, buf);
            op.encode_raw(buf);
        });
    }

    /// Queue `NodeOp{execute_task: ExecuteTask{spec, ..rest}}` (`rest.spec`
    /// is ignored), encoding `spec` where it lies: the same bytes as
    /// [`Outbox::push`] of that op, without copying the spec into an op
    /// first, and with its length worked out once instead of at each of
    /// the three levels that wrap it.
    pub fn push_execute(&self, spec: &TaskSpec, rest: &ExecuteTask) {
        debug_assert!(rest.spec.is_none(), "the spec is passed by itself");
        let spec_len = spec.encoded_len();
        // Field 1 first, then `rest`'s fields (2 and up): prost's order.
        let exec_len = 1 + encoded_len_varint(spec_len as u64) + spec_len + rest.encoded_len();
        let op_len = 1 + encoded_len_varint(exec_len as u64) + exec_len;
        self.push_entry(|buf| {
            encode_key(OPS_FIELD, WireType::LengthDelimited, buf);
            encode_varint(op_len as u64, buf);
            encode_key(EXECUTE_TASK_OP, WireType::LengthDelimited, buf);
            encode_varint(exec_len as u64, buf);
            encode_key(EXECUTE_SPEC_FIELD, WireType::LengthDelimited, buf);
            encode_varint(spec_len as u64, buf);
            spec.encode_raw(buf);
            rest.encode_raw(buf);
        });
    }

    /// Append one entry written by `write`, and wake the writer when the
    /// outbox was empty. Nothing is queued after a close.
    fn push_entry(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut s = self.lock();
        if s.close {
            return;
        }
        let wake = s.buf.len() == HEADER;
        write(&mut s.buf);
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

    /// `push_execute` writes the bytes `push` writes for the same op, with
    /// and without the fields besides the spec, and for a spec large
    /// enough that its lengths take several bytes.
    #[test]
    fn push_execute_writes_what_push_writes() {
        let mut spec = v1::TaskSpec {
            task_id: vec![7; 16].into(),
            function: Some(v1::FunctionDescriptor {
                name: "scoring.predict".into(),
                ..Default::default()
            }),
            args: vec![v1::TaskArg {
                value: Some(v1::ObjectValue {
                    format: v1::ValueFormat::Msgpack as i32,
                    body: Some(v1::object_value::Body::InlineData(vec![1u8; 40].into())),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            num_returns: 1,
            ..Default::default()
        };
        let rests = [
            v1::ExecuteTask::default(),
            v1::ExecuteTask {
                spec: None,
                function_payload: vec![9u8; 300].into(),
                gpu_ids: vec!["0".into(), "1".into()],
                assigned_resources: [("CPU".to_string(), 1.0)].into(),
                code_search_path: vec!["/srv/job".into()],
            },
        ];
        for big in [false, true] {
            if big {
                spec.args[0].value.as_mut().unwrap().body =
                    Some(v1::object_value::Body::InlineData(vec![2u8; 70_000].into()));
            }
            for rest in &rests {
                let (by_ref, whole) = (Outbox::new(), Outbox::new());
                by_ref.push_execute(&spec, rest);
                whole.push(&NodeOp {
                    op: Some(node_op::Op::ExecuteTask(v1::ExecuteTask {
                        spec: Some(spec.clone()),
                        ..rest.clone()
                    })),
                });
                let a = by_ref.try_take(Vec::new()).ok().unwrap();
                let b = whole.try_take(Vec::new()).ok().unwrap();
                assert_eq!(a.entries(), b.entries());
            }
        }
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
