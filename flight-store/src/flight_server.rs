//! The Flight service as a node mounts it: `do_get` framed by hand, every
//! other method through tonic.
//!
//! Through tonic, a `do_get` of 100 MB copies the bytes twice before the
//! kernel does: arrow-flight's IPC encoder writes each record batch into a
//! fresh `Vec`, and tonic's protobuf codec writes each `FlightData` into its
//! output buffer (two thirds of the node's CPU for a pull, page faults
//! included). Here the batches, decoded zero-copy from the stored object,
//! go through arrow-ipc's [`StreamEncoder`], whose body buffers are slices
//! of the originals, and each `FlightData` is written as protobuf framing
//! around those slices: the HTTP/2 layer hands them to `writev` as they are,
//! so a pull out of shared memory copies only in the kernel.
//!
//! Batches over [`MAX_MESSAGE_BODY_BYTES`] are cut into row ranges of about
//! [`TARGET_MESSAGE_BODY_BYTES`], so every message fits the 4 MiB default
//! receive limit of gRPC clients (arrow-flight's encoder does the same).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow_array::{Array, RecordBatch};
use arrow_buffer::Buffer;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::Ticket;
use arrow_ipc::writer::StreamEncoder;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use prost::Message;
use tonic::server::NamedService;
use tonic::Status;
use tower_service::Service;

use crate::flight::{FlightStoreService, GetBatches, MAX_FLIGHT_MESSAGE_BYTES};

/// The gRPC path of `do_get`.
pub const DO_GET_PATH: &str = "/arrow.flight.protocol.FlightService/DoGet";
/// The body size a cut batch's messages aim at.
pub const TARGET_MESSAGE_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Batches with a larger body are cut (a single row larger than this still
/// goes as one message).
pub const MAX_MESSAGE_BODY_BYTES: usize = 4 * 1024 * 1024 - 32 * 1024;
/// The largest `do_get` request message read (a ticket is an object id).
const MAX_TICKET_MESSAGE_BYTES: usize = 64 * 1024;
/// Pieces of a message under this size are copied together into one
/// buffer (framing, padding, small buffers), larger ones go out as they are.
const COALESCE_BYTES: usize = 4096;
/// Protobuf tags of `FlightData.data_header` (field 2) and
/// `FlightData.data_body` (field 1000), both length-delimited.
const DATA_HEADER_TAG: &[u8] = &[0x12];
const DATA_BODY_TAG: &[u8] = &[0xC2, 0x3E];

/// The Flight service of a node's port: `do_get` here, the rest in `tonic`.
#[derive(Clone)]
pub struct FlightServer {
    service: FlightStoreService,
    tonic: FlightServiceServer<FlightStoreService>,
}

impl FlightServer {
    /// `service` behind tonic (incoming messages up to
    /// [`MAX_FLIGHT_MESSAGE_BYTES`]: its default is 4 MiB, smaller than the
    /// batches pyarrow clients put), `do_get` framed here.
    pub fn new(service: FlightStoreService) -> Self {
        let tonic = FlightServiceServer::new(service.clone())
            .max_decoding_message_size(MAX_FLIGHT_MESSAGE_BYTES);
        FlightServer { service, tonic }
    }
}

impl NamedService for FlightServer {
    const NAME: &'static str = <FlightServiceServer<FlightStoreService> as NamedService>::NAME;
}

impl Service<http::Request<tonic::body::Body>> for FlightServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<http::Request<tonic::body::Body>>::poll_ready(&mut self.tonic, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == DO_GET_PATH {
            let service = self.service.clone();
            Box::pin(async move { Ok(do_get(service, request.into_body()).await) })
        } else {
            Box::pin(self.tonic.call(request))
        }
    }
}

/// A whole `do_get` call: its response, errors included (as gRPC statuses).
async fn do_get(
    service: FlightStoreService,
    body: tonic::body::Body,
) -> http::Response<tonic::body::Body> {
    let messages = async {
        let ticket = read_ticket(body).await?;
        let (schema, batches) = service.do_get_batches(&ticket.ticket).await?;
        let encoder = StreamEncoder::try_new(&schema)
            .map_err(|e| Status::internal(format!("do_get cannot encode schema {schema}: {e}")))?;
        Ok::<_, Status>(FlightMessages::new(encoder, batches))
    };
    match messages.await {
        Ok(messages) => {
            let mut response = http::Response::new(tonic::body::Body::new(DoGetBody {
                messages,
                pending: VecDeque::new(),
                ended: false,
            }));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}

/// The request's one gRPC message, decoded as a `Ticket`.
async fn read_ticket(mut body: tonic::body::Body) -> Result<Ticket, Status> {
    let mut message = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::internal(format!("do_get request: {e}")))?;
        if let Ok(data) = frame.into_data() {
            message.extend_from_slice(&data);
            if message.len() > MAX_TICKET_MESSAGE_BYTES + 5 {
                return Err(Status::invalid_argument(format!(
                    "do_get request is over {MAX_TICKET_MESSAGE_BYTES} bytes: a ticket is an object id"
                )));
            }
        }
    }
    if message.len() < 5 {
        return Err(Status::invalid_argument(
            "do_get request carries no ticket message",
        ));
    }
    if message[0] != 0 {
        return Err(Status::unimplemented(
            "do_get request is compressed: the ember object store takes uncompressed requests",
        ));
    }
    let len = u32::from_be_bytes([message[1], message[2], message[3], message[4]]) as usize;
    if message.len() != 5 + len {
        return Err(Status::invalid_argument(format!(
            "do_get request: a message of {len} bytes announced, {} received",
            message.len() - 5
        )));
    }
    Ticket::decode(&message[5..])
        .map_err(|e| Status::invalid_argument(format!("do_get request is not a Ticket: {e}")))
}

/// The response body: the data frames of each message, then the trailers
/// with the call's status.
struct DoGetBody {
    messages: FlightMessages,
    pending: VecDeque<Bytes>,
    ended: bool,
}

impl Body for DoGetBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(piece) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            // Encoding a message is memory work only (the object's bytes are
            // in memory already), so it happens here, as tonic's codec would.
            match this.messages.next_message(&mut this.pending) {
                Ok(true) => {}
                Ok(false) => {
                    this.ended = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&Status::ok(""))))));
                }
                Err(status) => {
                    this.ended = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.pending.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        // Only a message that cannot be a header value gets here.
        map.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    map
}

/// The `FlightData` messages of one `do_get`, made one at a time.
struct FlightMessages {
    encoder: Option<StreamEncoder>,
    batches: GetBatches,
    current: Option<Cut>,
    started: bool,
}

impl FlightMessages {
    fn new(encoder: StreamEncoder, batches: GetBatches) -> Self {
        FlightMessages {
            encoder: Some(encoder),
            batches,
            current: None,
            started: false,
        }
    }

    /// Append the next piece's messages (the schema first) to `out`; false
    /// at the end of the stream.
    fn next_message(&mut self, out: &mut VecDeque<Bytes>) -> Result<bool, Status> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(false);
        };
        let piece = loop {
            if let Some(piece) = self.current.as_mut().and_then(Iterator::next) {
                break Some(piece);
            }
            self.current = None;
            match self.batches.next() {
                Some(Ok(batch)) => self.current = Some(Cut::new(batch)),
                Some(Err(error)) => return Err(flight_status(error)),
                None => break None,
            }
        };
        let buffers = match piece {
            Some(piece) => {
                self.started = true;
                encoder.encode(&piece)
            }
            None => {
                let encoder = self.encoder.take().expect("checked above");
                if self.started {
                    return Ok(false);
                }
                // No batch at all: the schema alone (and the end marker,
                // which framing drops).
                encoder.finish()
            }
        }
        .map_err(|e| Status::internal(format!("do_get encode: {e}")))?;
        frame_messages(buffers, out)?;
        Ok(true)
    }
}

fn flight_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => Status::internal(format!("do_get: {other}")),
    }
}

/// A batch cut into row ranges whose bodies stay under
/// [`MAX_MESSAGE_BODY_BYTES`] (zero-copy slices).
struct Cut {
    batch: RecordBatch,
    next: usize,
    rows: usize,
    /// A batch of no rows is still sent, once.
    sent_empty: bool,
}

impl Cut {
    fn new(batch: RecordBatch) -> Self {
        let rows = batch.num_rows();
        let bytes = body_bytes(&batch);
        let rows_per_piece = if bytes <= MAX_MESSAGE_BODY_BYTES {
            rows
        } else {
            whole_words(
                ((rows as u128 * TARGET_MESSAGE_BODY_BYTES as u128) / bytes as u128) as usize,
            )
        };
        Cut {
            batch,
            next: 0,
            rows: rows_per_piece.max(1),
            sent_empty: false,
        }
    }
}

impl Iterator for Cut {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        let total = self.batch.num_rows();
        if total == 0 {
            let first = !self.sent_empty;
            self.sent_empty = true;
            return first.then(|| self.batch.clone());
        }
        if self.next >= total {
            return None;
        }
        loop {
            let len = self.rows.min(total - self.next);
            let piece = self.batch.slice(self.next, len);
            // Rows of uneven size (strings, lists) can make a range larger
            // than the estimate: halve it until it fits or is one row.
            if len > 1 && body_bytes(&piece) > MAX_MESSAGE_BODY_BYTES {
                self.rows = whole_words(len / 2);
                continue;
            }
            self.next += len;
            return Some(piece);
        }
    }
}

/// A row count rounded down to a multiple of 64 (so validity and boolean
/// bitmaps of a cut start on a byte, and are sliced, not copied), at least 1.
fn whole_words(rows: usize) -> usize {
    if rows >= 64 {
        rows / 64 * 64
    } else {
        rows.max(1)
    }
}

/// The bytes of a batch's (possibly sliced) buffers.
fn body_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_buffer_memory_size())
        })
        .sum()
}

/// The IPC stream messages in `buffers` (as [`StreamEncoder`] writes them:
/// continuation, metadata length, metadata, body) as gRPC `FlightData`
/// messages, the body pieces not copied.
fn frame_messages(buffers: Vec<Buffer>, out: &mut VecDeque<Bytes>) -> Result<(), Status> {
    let mut rope = Rope {
        buffers: buffers.into(),
    };
    while !rope.is_empty() {
        let prefix = rope.take_copy(8)?;
        if prefix[..4] != [0xFF; 4] {
            return Err(Status::internal(
                "do_get encode: message without continuation marker",
            ));
        }
        let metadata_len = i32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        if metadata_len <= 0 {
            break; // the end-of-stream marker
        }
        let metadata = rope.take_copy(metadata_len as usize)?;
        let message = arrow_ipc::root_as_message(&metadata)
            .map_err(|e| Status::internal(format!("do_get encode: invalid IPC message: {e}")))?;
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| Status::internal("do_get encode: negative body length"))?;
        let body = rope.take_slices(body_len)?;
        push_flight_data(&metadata, body, body_len, out)?;
    }
    Ok(())
}

/// One gRPC message `FlightData { data_header, data_body }`: its 5-byte
/// length prefix and protobuf framing written around the body's pieces.
fn push_flight_data(
    header: &[u8],
    body: Vec<Bytes>,
    body_len: usize,
    out: &mut VecDeque<Bytes>,
) -> Result<(), Status> {
    let header_field = DATA_HEADER_TAG.len()
        + prost::encoding::encoded_len_varint(header.len() as u64)
        + header.len();
    let body_field = if body_len == 0 {
        0
    } else {
        DATA_BODY_TAG.len() + prost::encoding::encoded_len_varint(body_len as u64) + body_len
    };
    let message_len = u32::try_from(header_field + body_field).map_err(|_| {
        Status::internal(format!(
            "do_get: a message of {body_len} bytes is over 4 GiB"
        ))
    })?;
    let mut small = BytesMut::with_capacity(5 + header_field + 16);
    small.put_u8(0); // not compressed
    small.put_u32(message_len);
    small.put_slice(DATA_HEADER_TAG);
    prost::encoding::encode_varint(header.len() as u64, &mut small);
    small.put_slice(header);
    if body_len > 0 {
        small.put_slice(DATA_BODY_TAG);
        prost::encoding::encode_varint(body_len as u64, &mut small);
    }
    for piece in body {
        if piece.len() < COALESCE_BYTES {
            small.put_slice(&piece);
        } else {
            if !small.is_empty() {
                out.push_back(small.split().freeze());
            }
            out.push_back(piece);
        }
    }
    if !small.is_empty() {
        out.push_back(small.freeze());
    }
    Ok(())
}

/// Buffers read front to back across their boundaries.
struct Rope {
    buffers: VecDeque<Buffer>,
}

impl Rope {
    fn is_empty(&self) -> bool {
        self.buffers.iter().all(|b| b.is_empty())
    }

    /// The next `len` bytes, copied (message prefixes and metadata).
    fn take_copy(&mut self, len: usize) -> Result<Vec<u8>, Status> {
        let mut copy = Vec::with_capacity(len);
        for piece in self.take_slices(len)? {
            copy.extend_from_slice(&piece);
        }
        Ok(copy)
    }

    /// The next `len` bytes as slices of the buffers, not copied.
    fn take_slices(&mut self, mut len: usize) -> Result<Vec<Bytes>, Status> {
        let mut pieces = Vec::new();
        while len > 0 {
            let front = self
                .buffers
                .pop_front()
                .ok_or_else(|| Status::internal("do_get encode: truncated IPC message"))?;
            if front.len() <= len {
                len -= front.len();
                if !front.is_empty() {
                    pieces.push(Bytes::from_owner(front));
                }
            } else {
                pieces.push(Bytes::from_owner(front.slice_with_length(0, len)));
                self.buffers.push_front(front.slice(len));
                len = 0;
            }
        }
        Ok(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::FlightData;

    /// The hand-written framing is byte for byte what prost writes.
    #[test]
    fn framing_matches_prost() {
        for (header_len, body) in [
            (120usize, vec![]),
            (3, vec![Bytes::from(vec![7u8; 10])]),
            (
                400,
                vec![
                    Bytes::from(vec![1u8; 5000]),
                    Bytes::from(vec![2u8; 17]),
                    Bytes::from(vec![3u8; 70_000]),
                ],
            ),
        ] {
            let header = vec![9u8; header_len];
            let body_len = body.iter().map(Bytes::len).sum();
            let mut out = VecDeque::new();
            push_flight_data(&header, body.clone(), body_len, &mut out).unwrap();
            let wire: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();

            let expected = FlightData {
                data_header: header.into(),
                data_body: body.concat().into(),
                ..Default::default()
            }
            .encode_to_vec();
            assert_eq!(wire[0], 0);
            assert_eq!(
                u32::from_be_bytes(wire[1..5].try_into().unwrap()) as usize,
                expected.len()
            );
            assert_eq!(&wire[5..], &expected[..]);
        }
    }

    /// Large body pieces go out as the very same memory, small ones coalesce.
    #[test]
    fn large_pieces_are_not_copied() {
        let big = Bytes::from(vec![5u8; 1 << 20]);
        let mut out = VecDeque::new();
        push_flight_data(
            b"hdr",
            vec![Bytes::from_static(b"pad"), big.clone()],
            big.len() + 3,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].as_ptr(), big.as_ptr());
    }

    /// The body pieces of a `do_get` of a stored 24 MB object are slices of
    /// the shared-memory block itself: nothing was copied on the way.
    #[tokio::test]
    async fn do_get_bodies_are_slices_of_shared_memory() {
        use crate::store::ObjectBody;
        use arrow_array::Float64Array;
        use ember_proto::ObjectId;
        use std::sync::Arc;
        let (_dir, store) = crate::test_util::test_store();
        let values = Float64Array::from_iter_values((0..3_000_000).map(|i| i as f64));
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(values) as arrow_array::ArrayRef)]).unwrap();
        let mut writer =
            arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        let stream = Bytes::from(writer.into_inner().unwrap());
        let id = ObjectId::random();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        store
            .put_bytes_waiting(
                id,
                crate::flight::ARROW,
                Bytes::new(),
                stream,
                1024,
                deadline,
            )
            .await
            .unwrap();
        assert!(matches!(store.get(&id).unwrap().body, ObjectBody::Shm(_)));
        let stored = store.read(&id).unwrap();
        let shm = stored.as_ptr() as usize..stored.as_ptr() as usize + stored.len();

        let service = FlightStoreService::new(store.clone(), 1024);
        let (schema, batches) = service.do_get_batches(id.hex().as_bytes()).await.unwrap();
        let mut messages = FlightMessages::new(StreamEncoder::try_new(&schema).unwrap(), batches);
        let mut out = VecDeque::new();
        while messages.next_message(&mut out).unwrap() {}
        let large: Vec<&Bytes> = out.iter().filter(|b| b.len() >= COALESCE_BYTES).collect();
        let in_shm: usize = large
            .iter()
            .filter(|b| shm.contains(&(b.as_ptr() as usize)))
            .map(|b| b.len())
            .sum();
        assert_eq!(
            in_shm, 24_000_000,
            "every value byte is sent from the block"
        );
        assert!(large.iter().all(|b| b.len() <= MAX_MESSAGE_BODY_BYTES));
    }

    #[test]
    fn cut_keeps_every_row_in_order_under_the_limit() {
        use arrow_array::{Float64Array, StringArray};
        use std::sync::Arc;
        let rows = 1_000_000;
        let values = Float64Array::from_iter_values((0..rows).map(|i| i as f64));
        // Strings of very uneven length: the first tenth long, the rest short.
        let strings = StringArray::from_iter_values((0..rows).map(|i| {
            if i < rows / 10 {
                "x".repeat(100)
            } else {
                "y".to_string()
            }
        }));
        let batch = RecordBatch::try_from_iter([
            ("v", Arc::new(values) as arrow_array::ArrayRef),
            ("s", Arc::new(strings) as arrow_array::ArrayRef),
        ])
        .unwrap();
        let pieces: Vec<RecordBatch> = Cut::new(batch.clone()).collect();
        assert!(pieces.len() > 1);
        let mut next = 0;
        for piece in &pieces {
            assert!(
                body_bytes(piece) <= MAX_MESSAGE_BODY_BYTES,
                "{}",
                body_bytes(piece)
            );
            assert_eq!(piece, &batch.slice(next, piece.num_rows()));
            next += piece.num_rows();
        }
        assert_eq!(next, rows);
    }
}
