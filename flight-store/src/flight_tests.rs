//! Tests of the Flight service against a real tonic server on 127.0.0.1:0,
//! driven by arrow-rs's `FlightClient`.

use super::*;
use crate::store::ObjectBody;
use crate::test_util::test_store;
use arrow_array::{Int64Array, StringArray};
use arrow_flight::FlightClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::Code;

const RAW: i32 = ValueFormat::Raw as i32;
const PICKLE: i32 = ValueFormat::Pickle as i32;
const INLINE_THRESHOLD: usize = 100 * 1024;

/// A store and a Flight server over it on an ephemeral port; shut down and
/// awaited by `shutdown`.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    client: FlightClient,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Fixture {
    async fn start() -> Fixture {
        let (dir, store) = test_store();
        let service = FlightStoreService::new(store.clone(), INLINE_THRESHOLD);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::builder()
                .add_service(service.into_server())
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        // The listener is bound already, so connecting cannot race the server.
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Fixture {
            _dir: dir,
            store,
            client: FlightClient::new(channel),
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    async fn do_get(&mut self, ticket: impl Into<Bytes>) -> (SchemaRef, Vec<RecordBatch>) {
        let mut stream = self.client.do_get(Ticket::new(ticket)).await.unwrap();
        let mut batches = Vec::new();
        while let Some(batch) = stream.try_next().await.unwrap() {
            batches.push(batch);
        }
        let schema = stream.schema().cloned().expect("schema received");
        (schema, batches)
    }

    async fn do_put(
        &mut self,
        descriptor: Option<FlightDescriptor>,
        batches: Vec<RecordBatch>,
    ) -> Result<ObjectId, FlightError> {
        let flight_data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(descriptor)
            .build(stream::iter(batches.into_iter().map(Ok)));
        let results: Vec<PutResult> = self.client.do_put(flight_data).await?.try_collect().await?;
        assert_eq!(results.len(), 1);
        let hex = std::str::from_utf8(&results[0].app_metadata).unwrap();
        Ok(ObjectId::from_hex(hex).unwrap())
    }

    async fn action(&mut self, kind: &str, body: impl Into<Bytes>) -> serde_json::Value {
        let results: Vec<Bytes> = self
            .client
            .do_action(Action::new(kind, body))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(results.len(), 1);
        serde_json::from_slice(&results[0]).unwrap()
    }
}

fn sample_batch(rows: i64) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
    let names: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..rows).map(|i| format!("row-{i}")),
    ));
    RecordBatch::try_from_iter([("id", ids), ("name", names)]).unwrap()
}

fn status_code(error: FlightError) -> Code {
    match error {
        FlightError::Tonic(status) => status.code(),
        other => panic!("expected a status, got {other}"),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_put_then_do_get_round_trips_record_batches() {
    let mut fx = Fixture::start().await;
    let small = sample_batch(10);
    let id = fx.do_put(None, vec![small.clone()]).await.unwrap();
    assert_eq!(id.index(), 0, "put ids have a zero index");
    let object = fx.store.get(&id).unwrap();
    assert_eq!(object.format, ARROW);
    assert!(matches!(object.body, ObjectBody::Inline(_)));
    let (schema, batches) = fx.do_get(id.hex()).await;
    assert_eq!(schema, small.schema());
    assert_eq!(batches, vec![small]);

    // Large enough to go to shared memory; several batches; raw-byte ticket.
    let large = vec![sample_batch(50_000), sample_batch(30_000)];
    let id = fx.do_put(None, large.clone()).await.unwrap();
    assert!(matches!(
        fx.store.get(&id).unwrap().body,
        ObjectBody::Shm(_)
    ));
    let (_, batches) = fx.do_get(id.to_vec()).await;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 80_000);
    let all = arrow_select_concat(&batches);
    assert_eq!(all, arrow_select_concat(&large));
    fx.shutdown().await;
}

/// Flatten batches to (id, name) pairs so equality ignores how the encoder
/// split them into messages.
fn arrow_select_concat(batches: &[RecordBatch]) -> Vec<(i64, String)> {
    batches
        .iter()
        .flat_map(|batch| {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let names = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            (0..batch.num_rows())
                .map(|i| (ids.value(i), names.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_put_honours_a_hex_path_descriptor() {
    let mut fx = Fixture::start().await;
    let wanted = ObjectId::random();
    let descriptor = FlightDescriptor::new_path(vec![wanted.hex()]);
    let id = fx
        .do_put(Some(descriptor.clone()), vec![sample_batch(3)])
        .await
        .unwrap();
    assert_eq!(id, wanted);
    let error = fx
        .do_put(Some(descriptor), vec![sample_batch(3)])
        .await
        .unwrap_err();
    assert_eq!(status_code(error), Code::AlreadyExists);
    // A path that is not an id is just a name: a fresh id.
    let named = FlightDescriptor::new_path(vec!["my-table".to_string()]);
    let id = fx.do_put(Some(named), vec![sample_batch(3)]).await.unwrap();
    assert_ne!(id, wanted);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_get_streams_raw_objects_in_chunks() {
    let mut fx = Fixture::start().await;
    let id = ObjectId::random();
    let data = pattern(2 * DEFAULT_CHUNK_BYTES + 12_345);
    fx.store
        .put_bytes(
            id,
            RAW,
            Bytes::from_static(b"\x01\xff"),
            &data,
            INLINE_THRESHOLD,
        )
        .unwrap();
    let (schema, batches) = fx.do_get(id.hex()).await;
    assert_eq!(schema.fields().len(), 1);
    assert_eq!(schema.field(0).name(), DATA_COLUMN);
    assert_eq!(schema.field(0).data_type(), &DataType::Binary);
    assert!(!schema.field(0).is_nullable());
    let metadata = schema.metadata();
    assert_eq!(metadata[FORMAT_METADATA_KEY], "raw");
    assert_eq!(metadata[OBJECT_ID_METADATA_KEY], id.hex());
    assert_eq!(metadata[METADATA_HEX_METADATA_KEY], "01ff");

    let mut rows = Vec::new();
    for batch in &batches {
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<BinaryArray>()
            .unwrap();
        rows.extend(column.iter().map(|row| row.unwrap().to_vec()));
    }
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|row| row.len() <= DEFAULT_CHUNK_BYTES));
    assert_eq!(rows.concat(), data);

    // An inline pickle object: one row, its format in the metadata.
    let small = ObjectId::random();
    fx.store
        .put_inline(small, PICKLE, Bytes::new(), Bytes::from_static(b"pickled"))
        .unwrap();
    let (schema, batches) = fx.do_get(small.hex()).await;
    assert_eq!(schema.metadata()[FORMAT_METADATA_KEY], "pickle");
    assert_eq!(batches.len(), 1);
    let column = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .unwrap();
    assert_eq!(column.value(0), b"pickled");
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_malformed_tickets_are_errors() {
    let mut fx = Fixture::start().await;
    let missing = ObjectId::random();
    let error = fx
        .client
        .do_get(Ticket::new(missing.hex()))
        .await
        .unwrap_err();
    let FlightError::Tonic(status) = error else {
        panic!("expected a status");
    };
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        format!("object {} not found", missing.hex())
    );

    let error = fx.client.do_get(Ticket::new("nonsense")).await.unwrap_err();
    assert_eq!(status_code(error), Code::InvalidArgument);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_info_schema_and_listing() {
    let mut fx = Fixture::start().await;
    let batch = sample_batch(5);
    let arrow_id = fx.do_put(None, vec![batch.clone()]).await.unwrap();
    let raw_id = ObjectId::random();
    let data = pattern(DEFAULT_CHUNK_BYTES + 1);
    fx.store
        .put_bytes(raw_id, RAW, Bytes::new(), &data, INLINE_THRESHOLD)
        .unwrap();
    // An unsealed object is not listed.
    fx.store.create(ObjectId::random(), 10).unwrap();

    let info = fx
        .client
        .get_flight_info(FlightDescriptor::new_path(vec![arrow_id.hex()]))
        .await
        .unwrap();
    assert_eq!(
        info.total_bytes,
        fx.store.get(&arrow_id).unwrap().size as i64
    );
    assert_eq!(info.total_records, -1);
    assert_eq!(info.endpoint.len(), 1);
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    assert_eq!(ticket.ticket, Bytes::from(arrow_id.hex()));
    assert_eq!(info.clone().try_decode_schema().unwrap(), *batch.schema());
    // The ticket it gives works.
    let (_, batches) = fx.do_get(ticket.ticket).await;
    assert_eq!(batches, vec![batch.clone()]);

    let info = fx
        .client
        .get_flight_info(FlightDescriptor::new_cmd(raw_id.to_vec()))
        .await
        .unwrap();
    assert_eq!(info.total_bytes, data.len() as i64);
    assert_eq!(info.total_records, 2);
    let schema = info.try_decode_schema().unwrap();
    assert_eq!(schema.metadata()[FORMAT_METADATA_KEY], "raw");

    let schema = fx
        .client
        .get_schema(FlightDescriptor::new_path(vec![arrow_id.hex()]))
        .await
        .unwrap();
    assert_eq!(schema, *batch.schema());

    let missing = fx
        .client
        .get_flight_info(FlightDescriptor::new_path(vec![ObjectId::random().hex()]))
        .await
        .unwrap_err();
    assert_eq!(status_code(missing), Code::NotFound);

    let infos: Vec<FlightInfo> = fx
        .client
        .list_flights(Bytes::new())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut listed: Vec<String> = infos
        .iter()
        .map(|info| info.flight_descriptor.as_ref().unwrap().path[0].clone())
        .collect();
    listed.sort();
    let mut expected = vec![arrow_id.hex(), raw_id.hex()];
    expected.sort();
    assert_eq!(listed, expected);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_stats_delete_pin() {
    let mut fx = Fixture::start().await;
    let id = ObjectId::random();
    fx.store
        .put_bytes(id, RAW, Bytes::new(), &pattern(200_000), INLINE_THRESHOLD)
        .unwrap();
    fx.store
        .put_inline(
            ObjectId::random(),
            RAW,
            Bytes::new(),
            Bytes::from_static(b"abc"),
        )
        .unwrap();

    let stats = fx.action("stats", Bytes::new()).await;
    assert_eq!(stats["capacity"], 64 << 20);
    assert_eq!(stats["used"], 200_704); // 200_000 rounded up to 4096
    assert_eq!(stats["inline_bytes"], 3);
    assert_eq!(stats["num_objects"], 2);
    assert_eq!(stats["num_unsealed"], 0);

    assert_eq!(fx.action("pin", id.hex()).await["pinned"], true);
    assert!(fx.store.is_pinned(&id));
    assert_eq!(fx.action("unpin", id.to_vec()).await["pinned"], false);
    assert!(!fx.store.is_pinned(&id));

    assert_eq!(fx.action("delete", id.hex()).await["deleted"], true);
    assert_eq!(fx.action("delete", id.hex()).await["deleted"], false);
    let error = fx.client.do_get(Ticket::new(id.hex())).await.unwrap_err();
    assert_eq!(status_code(error), Code::NotFound);

    let error = fx
        .client
        .do_action(Action::new("pin", id.hex()))
        .await
        .err()
        .expect("pin of a deleted object fails");
    assert_eq!(status_code(error), Code::NotFound);
    let error = fx
        .client
        .do_action(Action::new("explode", Bytes::new()))
        .await
        .err()
        .expect("unknown action fails");
    assert_eq!(status_code(error), Code::InvalidArgument);

    let actions: Vec<ActionType> = fx
        .client
        .list_actions()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let names: Vec<&str> = actions.iter().map(|a| a.r#type.as_str()).collect();
    assert_eq!(names, ["stats", "delete", "pin", "unpin"]);
    assert!(actions.iter().all(|a| !a.description.is_empty()));
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_calls_are_unimplemented() {
    let mut fx = Fixture::start().await;
    let error = fx
        .client
        .poll_flight_info(FlightDescriptor::new_path(vec![ObjectId::random().hex()]))
        .await
        .unwrap_err();
    assert_eq!(status_code(error), Code::Unimplemented);
    let error = fx.client.handshake(Bytes::new()).await.unwrap_err();
    assert_eq!(status_code(error), Code::Unimplemented);
    fx.shutdown().await;
}

#[test]
fn object_ids_parse_from_hex_or_raw_bytes() {
    let id = ObjectId::random();
    assert_eq!(parse_object_id(id.hex().as_bytes(), "t").unwrap(), id);
    assert_eq!(parse_object_id(id.as_bytes(), "t").unwrap(), id);
    assert!(parse_object_id(b"", "t").is_err());
    assert!(parse_object_id(&[b'z'; 40], "t").is_err());
    assert!(parse_object_id(&[0xff; 40], "t").is_err());
    let put = fresh_put_id();
    assert_eq!(put.index(), 0);
    assert_ne!(put, fresh_put_id());
}

#[test]
fn format_names() {
    assert_eq!(format_name(PICKLE), "pickle");
    assert_eq!(format_name(ValueFormat::Msgpack as i32), "msgpack");
    assert_eq!(format_name(RAW), "raw");
    assert_eq!(format_name(ValueFormat::Error as i32), "error");
    assert_eq!(format_name(0), "unspecified");
    assert_eq!(format_name(99), "unknown-99");
}

#[test]
fn corrupt_arrow_objects_fail_cleanly() {
    assert!(ArrowBatches::new(Bytes::from_static(b"not an arrow stream")).is_err());
    assert!(arrow_stream_schema(&Bytes::from_static(b"\xff\xff\xff\xff\x10\x00")).is_err());
}

/// One stored batch of every kind of column, written as an Arrow IPC stream
/// of a single 20+ MB record batch.
fn mixed_batch(rows: usize) -> RecordBatch {
    use arrow_array::builder::{
        FixedSizeListBuilder, Float32Builder, Int32Builder, ListBuilder, StringDictionaryBuilder,
    };
    use arrow_array::types::Int32Type;
    use arrow_array::{BooleanArray, Float64Array, StructArray};
    let floats: ArrayRef = Arc::new(Float64Array::from_iter(
        (0..rows).map(|i| (i % 7 != 3).then_some(i as f64 * 0.5)),
    ));
    // Uneven strings: long ones in the first tenth only.
    let strings: ArrayRef = Arc::new(StringArray::from_iter((0..rows).map(|i| {
        (i % 11 != 5).then(|| {
            if i < rows / 10 {
                format!("{i:0>60}")
            } else {
                format!("s{i}")
            }
        })
    })));
    let bools: ArrayRef = Arc::new(BooleanArray::from_iter(
        (0..rows).map(|i| (i % 5 != 0).then_some(i % 3 == 0)),
    ));
    let mut lists = ListBuilder::new(Int32Builder::new());
    for i in 0..rows {
        if i % 13 == 0 {
            lists.append_null();
        } else {
            for j in 0..(i % 4) {
                lists.values().append_value((i + j) as i32);
            }
            lists.append(true);
        }
    }
    let lists: ArrayRef = Arc::new(lists.finish());
    let mut vectors = FixedSizeListBuilder::new(Float32Builder::new(), 4);
    for i in 0..rows {
        for j in 0..4 {
            vectors.values().append_value((i * 4 + j) as f32);
        }
        vectors.append(i % 17 != 0);
    }
    let vectors: ArrayRef = Arc::new(vectors.finish());
    let fields: ArrayRef = Arc::new(StructArray::from(vec![
        (
            Arc::new(Field::new("a", DataType::Int64, false)),
            Arc::new(Int64Array::from_iter_values((0..rows as i64).map(|i| -i))) as ArrayRef,
        ),
        (
            Arc::new(Field::new("b", DataType::Utf8, false)),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("b{}", i % 100)),
            )) as ArrayRef,
        ),
    ]));
    let mut dictionary = StringDictionaryBuilder::<Int32Type>::new();
    for i in 0..rows {
        dictionary.append_value(["red", "green", "blue"][i % 3]);
    }
    let dictionary: ArrayRef = Arc::new(dictionary.finish());
    RecordBatch::try_from_iter([
        ("floats", floats),
        ("strings", strings),
        ("bools", bools),
        ("lists", lists),
        ("vectors", vectors),
        ("fields", fields),
        ("dictionary", dictionary),
    ])
    .unwrap()
}

fn ipc_stream(batches: &[RecordBatch], schema: &Schema) -> Bytes {
    let mut writer = StreamWriter::try_new(Vec::new(), schema).unwrap();
    for batch in batches {
        writer.write(batch).unwrap();
    }
    Bytes::from(writer.into_inner().unwrap())
}

/// A stored batch far over the 4 MiB a default gRPC client accepts per
/// message arrives cut into row ranges, every column equal, in order (the
/// client here keeps tonic's 4 MiB default, so a larger message would fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_get_cuts_a_large_batch_of_every_column_kind() {
    let mut fx = Fixture::start().await;
    let batch = mixed_batch(400_000);
    let stream = ipc_stream(std::slice::from_ref(&batch), &batch.schema());
    assert!(stream.len() > 16 << 20, "{} bytes", stream.len());
    let id = ObjectId::random();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    fx.store
        .put_bytes_waiting(id, ARROW, Bytes::new(), stream, INLINE_THRESHOLD, deadline)
        .await
        .unwrap();
    assert!(matches!(
        fx.store.get(&id).unwrap().body,
        ObjectBody::Shm(_)
    ));

    let (schema, pieces) = fx.do_get(id.hex()).await;
    assert_eq!(schema, batch.schema());
    assert!(pieces.len() >= 5, "{} pieces", pieces.len());
    let mut row = 0;
    for piece in &pieces {
        assert_eq!(
            piece,
            &batch.slice(row, piece.num_rows()),
            "rows from {row}"
        );
        row += piece.num_rows();
    }
    assert_eq!(row, batch.num_rows());
    fx.shutdown().await;
}

/// A stream of no batches sends its schema alone; an empty batch arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_get_of_empty_streams() {
    let mut fx = Fixture::start().await;
    let empty = sample_batch(0);
    for batches in [vec![], vec![empty.clone()]] {
        let id = ObjectId::random();
        fx.store
            .put_inline(
                id,
                ARROW,
                Bytes::new(),
                ipc_stream(&batches, &empty.schema()),
            )
            .unwrap();
        let (schema, received) = fx.do_get(id.hex()).await;
        assert_eq!(schema, empty.schema());
        assert_eq!(received, batches);
    }
    fx.shutdown().await;
}
