//! The Arrow Flight face of the [`Store`]: any Flight client (pyarrow,
//! arrow-go, arrow-rs, another ember node) can pull and push objects.
//!
//! Conventions (so that plain `pyarrow.flight` works):
//!
//! - A ticket is the object id: 40 hex ASCII characters or the 20 raw bytes.
//! - `do_get` of an ARROW object (stored as an Arrow IPC stream) sends that
//!   stream's schema and record batches. Any other format is sent as a table
//!   with one non-nullable `Binary` column `data`, one row per chunk of at
//!   most [`DEFAULT_CHUNK_BYTES`] (in order; the rows concatenated are the
//!   object's bytes), with schema metadata `ember.format`,
//!   `ember.object_id` and `ember.metadata_hex`.
//! - `do_put` stores the uploaded batches as one ARROW object under a fresh
//!   put id, or under the id named by a descriptor path `[<40 hex>]`, and
//!   answers one `PutResult` whose `app_metadata` is the id in hex.
//! - `get_flight_info` / `get_schema` take a descriptor whose path is
//!   `[<hex id>]` or whose cmd is the id (hex or raw).
//! - Actions: `stats`, `delete`, `pin`, `unpin` (JSON results).
//!
//! Handlers decode and validate, call one `Store` method, and map the result;
//! store errors become statuses through `From<StoreError> for Status`.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use arrow_ipc::reader::{StreamDecoder, StreamReader};
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use ember_proto::v1::ValueFormat;
use ember_proto::{ObjectId, TaskId};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::StoreError;
use crate::flight_server::FlightServer;
use crate::store::{Store, StoredObject};

/// Largest row of the binary `data` column sent by `do_get`. Slightly under
/// 4 MiB so that each Flight message, framing included, fits the default
/// 4 MiB gRPC receive limit of tonic and grpc clients.
pub const DEFAULT_CHUNK_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// The largest single Flight message [`FlightStoreService::into_server`]
/// accepts (pyarrow sends a whole record batch as one message).
pub const MAX_FLIGHT_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

/// How long a `do_put` waits for room by default (as a client's put).
pub const DEFAULT_PUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Bytes of a spilled Arrow object read to learn its schema.
const SCHEMA_PREFIX_BYTES: u64 = 64 * 1024;
/// A `do_get` ticket `raw:<object id>` streams the stored bytes of any
/// object as the binary `data` column (Arrow objects too: their IPC stream).
pub const RAW_TICKET_PREFIX: &[u8] = b"raw:";
/// Name of the single column of non-Arrow objects.
pub const DATA_COLUMN: &str = "data";
/// Schema metadata keys of non-Arrow objects.
pub const FORMAT_METADATA_KEY: &str = "ember.format";
pub const OBJECT_ID_METADATA_KEY: &str = "ember.object_id";
pub const METADATA_HEX_METADATA_KEY: &str = "ember.metadata_hex";

pub(crate) const ARROW: i32 = ValueFormat::Arrow as i32;

/// The record batches of a `do_get`, in order.
pub(crate) type GetBatches =
    Box<dyn Iterator<Item = Result<RecordBatch, FlightError>> + Send + 'static>;

/// The actions `do_action` understands, with their descriptions.
const ACTIONS: [(&str, &str); 4] = [
    (
        "stats",
        "store accounting as JSON: capacity, used, inline_bytes, num_objects, num_unsealed, \
         spilled_bytes, num_spilled, total_spilled_bytes, total_restored_bytes",
    ),
    (
        "delete",
        "body = object id (hex or raw); removes the object; returns {\"deleted\": bool}",
    ),
    (
        "pin",
        "body = object id (hex or raw); marks the object pinned (never spilled); returns {\"pinned\": true}",
    ),
    (
        "unpin",
        "body = object id (hex or raw); clears the pinned mark; returns {\"pinned\": false}",
    ),
];

/// Arrow Flight service over a shared [`Store`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FlightStoreService {
    store: Arc<Store>,
    /// `do_put` results up to this many bytes are stored inline.
    inline_threshold: usize,
    /// Row size of the binary `data` column in `do_get`.
    chunk_bytes: usize,
    /// How long a `do_put` that does not fit waits for room (spilling).
    put_timeout: std::time::Duration,
}

impl FlightStoreService {
    pub fn new(store: Arc<Store>, inline_threshold: usize) -> Self {
        FlightStoreService {
            store,
            inline_threshold,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            put_timeout: DEFAULT_PUT_TIMEOUT,
        }
    }

    /// How long a `do_put` that does not fit waits for room before it fails
    /// with `RESOURCE_EXHAUSTED`.
    pub fn with_put_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.put_timeout = timeout;
        self
    }

    /// Override the `do_get` chunk size of non-Arrow objects (at least 1).
    /// Larger chunks need clients with a larger receive-message limit.
    pub fn with_chunk_bytes(mut self, chunk_bytes: usize) -> Self {
        self.chunk_bytes = chunk_bytes.clamp(1, i32::MAX as usize);
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The service to mount: `do_get` with zero-copy framing, every other
    /// method through tonic ([`FlightServer`]).
    pub fn into_server(self) -> FlightServer {
        FlightServer::new(self)
    }

    fn sealed_object(&self, id: &ObjectId) -> Result<StoredObject, Status> {
        self.store
            .get(id)
            .ok_or_else(|| Status::from(StoreError::NotFound { id: *id }))
    }

    /// An object's data: zero-copy from memory, or read from its spill file
    /// on a blocking thread (a spilled object is streamed from disk, not
    /// restored into shared memory).
    async fn object_data(&self, id: &ObjectId) -> Result<Bytes, Status> {
        if let Some(data) = self.store.read(id) {
            return Ok(data);
        }
        let (store, id) = (self.store.clone(), *id);
        tokio::task::spawn_blocking(move || store.load(&id))
            .await
            .map_err(|e| Status::internal(format!("read of object {id} failed: {e}")))?
            .map_err(Status::from)
    }

    /// What `do_get` of `ticket` streams: the schema and the record batches,
    /// decoded lazily and zero-copy over the object's bytes. An ARROW object
    /// is its own stream; anything else (and any object under a `raw:`
    /// ticket) is the one-column binary table of its bytes.
    pub(crate) async fn do_get_batches(
        &self,
        ticket: &[u8],
    ) -> Result<(SchemaRef, GetBatches), Status> {
        // `raw:<id>`: the stored bytes as they are, whatever the format (how
        // nodes copy objects between them).
        let (raw, ticket) = match ticket.strip_prefix(RAW_TICKET_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, ticket),
        };
        let id = parse_object_id(ticket, "ticket")?;
        let object = self.sealed_object(&id)?;
        // Zero-copy for shm objects; keeps the block alive while streaming.
        let data = self.object_data(&id).await?;
        if object.format == ARROW && !raw {
            let batches = ArrowBatches::new(data).map_err(|e| {
                Status::internal(format!("object {id} is not a valid arrow stream: {e}"))
            })?;
            Ok((batches.schema(), Box::new(batches)))
        } else {
            let schema = Arc::new(binary_schema(&id, &object));
            let batches = binary_batches(schema.clone(), data, self.chunk_bytes);
            Ok((schema, Box::new(batches)))
        }
    }

    /// The schema `do_get` will send for `id`, and the number of records when
    /// known without decoding the data.
    fn schema_of(&self, id: &ObjectId) -> Result<(SchemaRef, Option<u64>), Status> {
        let object = self.sealed_object(id)?;
        if object.format == ARROW {
            // Spilled: the schema is the stream's first message; a short read
            // of its file (the whole file if the schema is larger).
            let prefix = self.store.load_prefix(id, SCHEMA_PREFIX_BYTES)?;
            let schema = match arrow_stream_schema(&prefix) {
                Ok(schema) => schema,
                Err(_) if (prefix.len() as u64) < object.size => {
                    arrow_stream_schema(&self.store.load(id)?)?
                }
                Err(error) => return Err(error),
            };
            Ok((schema, None))
        } else {
            let chunks = object.size.div_ceil(self.chunk_bytes as u64);
            Ok((Arc::new(binary_schema(id, &object)), Some(chunks)))
        }
    }

    fn flight_info(
        &self,
        id: &ObjectId,
        descriptor: Option<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        let (schema, total_records) = self.schema_of(id)?;
        let size = self.sealed_object(id)?.size;
        let descriptor = descriptor.unwrap_or_else(|| FlightDescriptor::new_path(vec![id.hex()]));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encode schema of object {id}: {e}")))?
            .with_descriptor(descriptor)
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(id.hex())))
            .with_total_records(total_records.map_or(-1, |n| n as i64))
            .with_total_bytes(size as i64)
            .with_ordered(true);
        Ok(info)
    }

    /// Decode a `do_put` stream into one Arrow IPC stream, bounded by what the
    /// store could ever hold.
    async fn collect_put_stream(
        &self,
        flight_data: BoxStream<'static, Result<FlightData, FlightError>>,
    ) -> Result<Vec<u8>, Status> {
        let limit = self.store.capacity().max(self.inline_threshold as u64);
        let mut decoder = FlightDataDecoder::new(flight_data);
        let mut writer: Option<StreamWriter<Vec<u8>>> = None;
        while let Some(decoded) = decoder.next().await {
            match decoded.map_err(put_stream_status)?.payload {
                DecodedPayload::None => {}
                DecodedPayload::Schema(schema) => {
                    if writer.is_some() {
                        return Err(Status::invalid_argument(
                            "do_put stream carried a second schema",
                        ));
                    }
                    writer = Some(StreamWriter::try_new(Vec::new(), &schema).map_err(invalid)?);
                }
                DecodedPayload::RecordBatch(batch) => {
                    let writer = writer.as_mut().ok_or_else(|| {
                        Status::invalid_argument("do_put stream sent a batch before its schema")
                    })?;
                    writer.write(&batch).map_err(invalid)?;
                    let written = writer.get_ref().len() as u64;
                    if written > limit {
                        return Err(StoreError::TooLarge {
                            requested: written,
                            capacity: limit,
                        }
                        .into());
                    }
                }
            }
        }
        let mut writer =
            writer.ok_or_else(|| Status::invalid_argument("do_put stream carried no schema"))?;
        writer.finish().map_err(invalid)?;
        writer.into_inner().map_err(invalid)
    }
}

#[tonic::async_trait]
impl FlightService for FlightStoreService {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "handshake is not supported by the ember object store: send the cluster token as call metadata",
        ))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let mut objects = self.store.list();
        objects.sort_unstable_by_key(|info| info.id);
        let service = self.clone();
        // Built lazily as the client reads; objects deleted meanwhile are skipped.
        let infos = objects
            .into_iter()
            .filter_map(move |object| service.flight_info(&object.id, None).ok())
            .map(Ok);
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.into_inner();
        let id = descriptor_object_id(&descriptor)?;
        Ok(Response::new(self.flight_info(&id, Some(descriptor))?))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "poll_flight_info is not supported by the ember object store: objects are complete once sealed, use get_flight_info",
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let id = descriptor_object_id(request.get_ref())?;
        let (schema, _) = self.schema_of(&id)?;
        let result = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e| Status::internal(format!("encode schema of object {id}: {e}")))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        // The node serves `do_get` through `FlightServer` (zero-copy
        // framing); this is the path of a bare `FlightServiceServer`.
        let (schema, batches) = self.do_get_batches(&request.get_ref().ticket).await?;
        let flight_data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(stream::iter(batches))
            .map_err(Status::from);
        Ok(Response::new(flight_data.boxed()))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("do_put stream is empty"))?;
        let id = first
            .flight_descriptor
            .as_ref()
            .and_then(descriptor_put_id)
            .unwrap_or_else(fresh_put_id);
        if self.store.contains(&id) {
            return Err(StoreError::AlreadyExists { id }.into());
        }
        let flight_data = stream::once(async move { Ok(first) })
            .chain(incoming.map_err(FlightError::from))
            .boxed();
        let ipc_stream = self.collect_put_stream(flight_data).await?;

        if ipc_stream.len() <= self.inline_threshold {
            // Small: the buffer becomes the inline value as is, no copy.
            self.store
                .put_inline(id, ARROW, Bytes::new(), Bytes::from(ipc_stream))?;
        } else {
            // Large: waits for room (spilling others) if the arena is full,
            // then a copy into the arena, kept off the async workers.
            let deadline = tokio::time::Instant::now() + self.put_timeout;
            self.store
                .put_bytes_waiting(
                    id,
                    ARROW,
                    Bytes::new(),
                    Bytes::from(ipc_stream),
                    self.inline_threshold,
                    deadline,
                )
                .await?;
        }
        tracing::debug!(object_id = %id, "object stored by do_put");
        let result = PutResult {
            app_metadata: Bytes::from(id.hex()),
        };
        Ok(Response::new(
            stream::once(async move { Ok(result) }).boxed(),
        ))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented(
            "do_exchange is not supported by the ember object store: use do_put and do_get",
        ))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let body = match action.r#type.as_str() {
            "stats" => {
                let stats = self.store.stats();
                serde_json::json!({
                    "capacity": stats.capacity,
                    "used": stats.used,
                    "inline_bytes": stats.inline_bytes,
                    "num_objects": stats.num_objects,
                    "num_unsealed": stats.num_unsealed,
                    "spilled_bytes": stats.spilled_bytes,
                    "num_spilled": stats.num_spilled,
                    "total_spilled_bytes": stats.total_spilled_bytes,
                    "total_restored_bytes": stats.total_restored_bytes,
                })
            }
            "delete" => {
                let id = parse_object_id(&action.body, "delete action body")?;
                serde_json::json!({ "deleted": self.store.delete(&id) })
            }
            kind @ ("pin" | "unpin") => {
                let id = parse_object_id(&action.body, "pin action body")?;
                let pinned = kind == "pin";
                self.store.set_pinned(&id, pinned)?;
                serde_json::json!({ "pinned": pinned })
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown action {other:?}: known actions are stats, delete, pin, unpin"
                )))
            }
        };
        let result = arrow_flight::Result::new(body.to_string().into_bytes());
        Ok(Response::new(
            stream::once(async move { Ok(result) }).boxed(),
        ))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = ACTIONS.iter().map(|(name, description)| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        });
        Ok(Response::new(stream::iter(actions).boxed()))
    }
}

/// An object id from a ticket, action body or descriptor element: 40 hex
/// characters or 20 raw bytes.
pub fn parse_object_id(bytes: &[u8], what: &str) -> Result<ObjectId, Status> {
    let invalid = || {
        Status::invalid_argument(format!(
            "invalid object id in {what}: expected 40 hex characters or 20 bytes, got {} bytes",
            bytes.len()
        ))
    };
    match bytes.len() {
        ObjectId::LEN => ObjectId::from_bytes(bytes).map_err(|_| invalid()),
        40 => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| ObjectId::from_hex(text).ok())
            .ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

/// The object a descriptor names: path `[<hex id>]`, or cmd = the id.
fn descriptor_object_id(descriptor: &FlightDescriptor) -> Result<ObjectId, Status> {
    match descriptor.path.as_slice() {
        [element] => parse_object_id(element.as_bytes(), "descriptor path"),
        [] if !descriptor.cmd.is_empty() => parse_object_id(&descriptor.cmd, "descriptor cmd"),
        _ => Err(Status::invalid_argument(
            "descriptor must name one object: path [<40 hex id>] or cmd = the id",
        )),
    }
}

/// The id a `do_put` descriptor asks for: a path of one 40-hex id. Other
/// descriptors (names, commands) get a fresh id.
fn descriptor_put_id(descriptor: &FlightDescriptor) -> Option<ObjectId> {
    match descriptor.path.as_slice() {
        [element] if element.len() == 40 => ObjectId::from_hex(element).ok(),
        _ => None,
    }
}

/// A fresh put id: 16 random bytes (a TaskId-like prefix) + index 0.
fn fresh_put_id() -> ObjectId {
    let mut bytes = [0u8; ObjectId::LEN];
    bytes[..TaskId::LEN].copy_from_slice(TaskId::random().as_bytes());
    ObjectId(bytes)
}

fn invalid(error: arrow_schema::ArrowError) -> Status {
    Status::invalid_argument(format!("invalid do_put stream: {error}"))
}

fn put_stream_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!("invalid do_put stream: {other}")),
    }
}

/// The lowercase format name used in schema metadata ("pickle", "raw", ...).
pub fn format_name(format: i32) -> String {
    match ValueFormat::try_from(format) {
        Ok(ValueFormat::FormatUnspecified) => "unspecified".to_string(),
        Ok(known) => known.as_str_name().to_ascii_lowercase(),
        Err(_) => format!("unknown-{format}"),
    }
}

/// The one-column binary schema of a non-Arrow object.
fn binary_schema(id: &ObjectId, object: &StoredObject) -> Schema {
    let metadata = HashMap::from([
        (FORMAT_METADATA_KEY.to_string(), format_name(object.format)),
        (OBJECT_ID_METADATA_KEY.to_string(), id.hex()),
        (
            METADATA_HEX_METADATA_KEY.to_string(),
            hex::encode(&object.metadata),
        ),
    ]);
    Schema::new(vec![Field::new(DATA_COLUMN, DataType::Binary, false)]).with_metadata(metadata)
}

/// Record batches of one row each, `chunk_bytes` of `data` per row, made
/// lazily and without copying `data`.
fn binary_batches(
    schema: SchemaRef,
    data: Bytes,
    chunk_bytes: usize,
) -> impl Iterator<Item = Result<RecordBatch, FlightError>> + Send + 'static {
    let chunk_bytes = chunk_bytes.clamp(1, i32::MAX as usize);
    let chunks = data.len().div_ceil(chunk_bytes);
    (0..chunks).map(move |index| {
        let start = index * chunk_bytes;
        let end = (start + chunk_bytes).min(data.len());
        let values = Buffer::from(data.slice(start..end));
        // `end - start <= chunk_bytes <= i32::MAX`, so the cast is exact.
        let offsets = OffsetBuffer::new(ScalarBuffer::from(vec![0i32, (end - start) as i32]));
        let column: ArrayRef = Arc::new(BinaryArray::try_new(offsets, values, None)?);
        Ok(RecordBatch::try_new(schema.clone(), vec![column])?)
    })
}

/// The schema of a stored Arrow IPC stream (reads only the first message).
fn arrow_stream_schema(data: &Bytes) -> Result<SchemaRef, Status> {
    StreamReader::try_new(Cursor::new(data.as_ref()), None)
        .map(|reader| reader.schema())
        .map_err(|e| Status::internal(format!("stored object is not a valid arrow stream: {e}")))
}

/// Lazily decodes a stored Arrow IPC stream, zero-copy over its `Bytes`.
struct ArrowBatches {
    decoder: StreamDecoder,
    buffer: Buffer,
    schema: SchemaRef,
    /// The first batch, decoded early to learn the schema.
    pending: Option<RecordBatch>,
    done: bool,
}

impl ArrowBatches {
    fn new(data: Bytes) -> Result<Self, arrow_schema::ArrowError> {
        let mut decoder = StreamDecoder::new();
        let mut buffer = Buffer::from(data);
        let pending = decoder.decode(&mut buffer)?;
        let schema = decoder.schema().ok_or_else(|| {
            arrow_schema::ArrowError::IpcError("stream has no schema message".to_string())
        })?;
        Ok(ArrowBatches {
            decoder,
            buffer,
            schema,
            pending,
            done: false,
        })
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Iterator for ArrowBatches {
    type Item = Result<RecordBatch, FlightError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(batch) = self.pending.take() {
            return Some(Ok(batch));
        }
        if self.done {
            return None;
        }
        match self.decoder.decode(&mut self.buffer) {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => {
                self.done = true;
                self.decoder.finish().err().map(|e| Err(e.into()))
            }
            Err(error) => {
                self.done = true;
                Some(Err(error.into()))
            }
        }
    }
}

#[cfg(test)]
#[path = "flight_tests.rs"]
mod tests;
