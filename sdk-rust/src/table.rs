//! Arrow tables as ember values: [`Table`].
//!
//! An `ARROW` object's bytes are an Arrow IPC *stream* (a schema message,
//! then record batches), the form Python's `ember.put(pyarrow_table)`
//! stores and any Arrow library reads. A [`Table`] is such a stream decoded:
//! a schema and its record batches.
//!
//! # How a `Table` travels
//!
//! Calls, puts, gets and worker functions are typed with serde, so a
//! `Table` is a serde type too, one that only ember's codec
//! ([`codec::encode`](crate::codec::encode),
//! [`codec::decode`](crate::codec::decode)) understands:
//!
//! - It serializes as a newtype struct of the reserved name
//!   [`TABLE_MARKER`] around its IPC stream bytes. The codec recognises the
//!   name: a `Table` that is the *whole* value (a put, a call argument, a
//!   worker function's result, or one wrapped in `Some` or a newtype
//!   struct) becomes an `ARROW` value holding the stream. A `Table` inside
//!   another value (a field of a struct, an element of a `Vec`) fails to
//!   encode with [`Error::Codec`]: msgpack has no
//!   place for it.
//! - It deserializes by asking for that newtype struct. The codec's
//!   reader of `ARROW` values answers with the stream's bytes (read in
//!   place, shared memory included: the batches are a copy); msgpack's
//!   reader does not, so a `MSGPACK` (or `RAW`) value read as a `Table`
//!   fails with `Error::Codec`. An `ARROW` value read as anything but a
//!   `Table` (or `Option<Table>`, or a newtype struct around one) fails
//!   the same way.
//!
//! With other serde formats (JSON...) a `Table` writes its IPC bytes as a
//! newtype struct around bytes and cannot be read back.

use std::fmt;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, Schema, SchemaRef};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::{Error, Result};

/// The name of the newtype struct a [`Table`] serializes as (see the
/// module docs): the codec's sign for an `ARROW` value.
pub const TABLE_MARKER: &str = "$ember::arrow::Table";

/// An Arrow table: a schema and record batches of that schema. Stored,
/// passed and returned as an `ARROW` value (an Arrow IPC stream), the form
/// Python reads as a `pyarrow.Table`.
///
/// ```no_run
/// use std::sync::Arc;
/// use ember::arrow_array::{Int64Array, RecordBatch};
/// use ember::arrow_schema::{DataType, Field, Schema};
/// use ember::Table;
///
/// # async fn f(client: ember::Client) -> ember::Result<()> {
/// let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
/// let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])?;
/// let table = Table::from(batch);
/// let r = client.put(&table).await?;          // an ARROW object
/// let back: Table = r.get().await?;
/// assert_eq!(back.num_rows(), 3);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    /// A table of `batches`, each of which must have `schema` (its fields;
    /// metadata may differ).
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Table> {
        for (i, b) in batches.iter().enumerate() {
            if b.schema().fields() != schema.fields() {
                return Err(Error::InvalidArgument(format!(
                    "record batch {i} has the schema {:?}, the table {:?}",
                    b.schema().fields(),
                    schema.fields()
                )));
            }
        }
        Ok(Table { schema, batches })
    }

    /// A table of no rows.
    pub fn empty(schema: SchemaRef) -> Table {
        Table {
            schema,
            batches: Vec::new(),
        }
    }

    /// A table of `batches`, with the first one's schema (at least one
    /// batch is needed).
    pub fn from_batches(batches: Vec<RecordBatch>) -> Result<Table> {
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| Error::InvalidArgument("a table of no batches needs a schema".into()))?;
        Table::new(schema, batches)
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    pub fn num_columns(&self) -> usize {
        self.schema.fields().len()
    }

    /// The table as an Arrow IPC stream (what an `ARROW` object holds).
    pub fn to_ipc(&self) -> Result<Vec<u8>> {
        let size: usize = self.batches.iter().map(|b| b.get_array_memory_size()).sum();
        let mut out = Vec::with_capacity(size + 1024);
        self.write_ipc(&mut out).map_err(|e| {
            Error::Codec(format!(
                "cannot write the table as an Arrow IPC stream: {e}"
            ))
        })?;
        Ok(out)
    }

    fn write_ipc(&self, out: &mut Vec<u8>) -> std::result::Result<(), ArrowError> {
        let mut writer = StreamWriter::try_new(out, &self.schema)?;
        for batch in &self.batches {
            writer.write(batch)?;
        }
        writer.finish()
    }

    /// Read an Arrow IPC stream (a copy: the table does not borrow `data`).
    pub fn from_ipc(data: &[u8]) -> Result<Table> {
        let fail =
            |e: ArrowError| Error::Codec(format!("the value is not a valid Arrow IPC stream: {e}"));
        let reader = StreamReader::try_new(data, None).map_err(fail)?;
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(fail)?;
        Ok(Table { schema, batches })
    }
}

impl From<RecordBatch> for Table {
    fn from(batch: RecordBatch) -> Self {
        Table {
            schema: batch.schema(),
            batches: vec![batch],
        }
    }
}

impl From<Schema> for Table {
    /// An empty table of `schema`.
    fn from(schema: Schema) -> Self {
        Table::empty(Arc::new(schema))
    }
}

/// Writes the table's IPC stream as bytes when (and only when) it is
/// serialized: a serializer that refuses the marker never pays for it.
struct IpcBytes<'a>(&'a Table);

impl Serialize for IpcBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let bytes = self.0.to_ipc().map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl Serialize for Table {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(TABLE_MARKER, &IpcBytes(self))
    }
}

struct TableVisitor;

impl<'de> Visitor<'de> for TableVisitor {
    type Value = Table;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ARROW value (an Arrow IPC stream)")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Table, E> {
        Table::from_ipc(v).map_err(|e| E::custom(e.to_string()))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        _d: D,
    ) -> std::result::Result<Table, D::Error> {
        // What every reader but the codec's ARROW reader answers (msgpack's
        // included): not an ARROW value.
        Err(de::Error::custom(
            "an ember::Table is read from an ARROW value (an Arrow IPC stream), \
             and this value is not one",
        ))
    }
}

impl<'de> Deserialize<'de> for Table {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Table, D::Error> {
        d.deserialize_newtype_struct(TABLE_MARKER, TableVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode, from_msgpack, to_msgpack};
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field};
    use ember_proto::v1::ValueFormat;

    fn table(rows: i64) -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("y", DataType::Float64, true),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = |from: i64, to: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(from..to)),
                    Arc::new(Float64Array::from_iter(
                        (from..to).map(|i| (i % 3 != 0).then_some(i as f64 / 2.0)),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        (from..to).map(|i| format!("r{i}")),
                    )),
                ],
            )
            .unwrap()
        };
        Table::new(
            schema.clone(),
            vec![batch(0, rows / 2), batch(rows / 2, rows)],
        )
        .unwrap()
    }

    #[test]
    fn a_table_encodes_as_its_ipc_stream_and_decodes_back() {
        let t = table(100);
        let (format, data) = encode(&t).unwrap();
        assert_eq!(format, ValueFormat::Arrow);
        assert_eq!(data, t.to_ipc().unwrap());
        let back: Table = decode(ValueFormat::Arrow, &data).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.num_rows(), 100);
        // Wrapped whole: still the table.
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Wrapper(Table);
        assert_eq!(
            encode(&Some(&t)).unwrap(),
            (ValueFormat::Arrow, data.clone())
        );
        assert_eq!(
            encode(&Wrapper(t.clone())).unwrap(),
            (ValueFormat::Arrow, data.clone())
        );
        let some: Option<Table> = decode(ValueFormat::Arrow, &data).unwrap();
        assert_eq!(some.as_ref(), Some(&t));
        let w: Wrapper = decode(ValueFormat::Arrow, &data).unwrap();
        assert_eq!(w.0, t);
        // An empty table keeps its schema.
        let empty = Table::empty(t.schema.clone());
        let (format, data) = encode(&empty).unwrap();
        assert_eq!(format, ValueFormat::Arrow);
        assert_eq!(decode::<Table>(format, &data).unwrap(), empty);
        // Anything else is msgpack, as before.
        assert_eq!(
            encode(&vec![1i64, 2]).unwrap(),
            (ValueFormat::Msgpack, to_msgpack(&vec![1i64, 2]).unwrap())
        );
    }

    fn codec_error<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Codec(m)) => m,
            other => panic!("expected a codec error, got {other:?}"),
        }
    }

    #[test]
    fn a_table_inside_another_value_does_not_encode() {
        #[derive(serde::Serialize)]
        struct Holder {
            t: Table,
        }
        struct Unsized(Vec<Table>);
        impl Serialize for Unsized {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                for t in &self.0 {
                    seq.serialize_element(t)?;
                }
                seq.end()
            }
        }
        let t = table(4);
        for m in [
            codec_error(encode(&Holder { t: t.clone() })),
            codec_error(encode(&vec![t.clone()])),
            codec_error(encode(&(t.clone(), 1))),
            codec_error(encode(&Unsized(vec![t.clone()]))),
            codec_error(encode(&Unsized(vec![t.clone(), t.clone()]))),
        ] {
            assert!(m.contains("whole value"), "{m}");
        }
        let m = codec_error(to_msgpack(&t));
        assert!(m.contains("not msgpack"), "{m}");
    }

    #[test]
    fn values_of_the_other_format_are_codec_errors() {
        let t = table(4);
        let (_, arrow) = encode(&t).unwrap();
        // ARROW read as anything but a table.
        let m = codec_error(decode::<i64>(ValueFormat::Arrow, &arrow));
        assert!(m.contains("ARROW") && m.contains("i64"), "{m}");
        codec_error(decode::<crate::Value>(ValueFormat::Arrow, &arrow));
        codec_error(decode::<Vec<u8>>(ValueFormat::Arrow, &arrow));
        // msgpack (even bin holding a real IPC stream) and RAW read as a table.
        for data in [
            to_msgpack(&7i64).unwrap(),
            to_msgpack(&serde_bytes::ByteBuf::from(arrow.clone())).unwrap(),
        ] {
            let m = codec_error(decode::<Table>(ValueFormat::Msgpack, &data));
            assert!(m.contains("ARROW value"), "{m}");
            codec_error(from_msgpack::<Table>(&data));
        }
        codec_error(decode::<Table>(ValueFormat::Raw, &arrow));
        // ARROW that is not an IPC stream.
        let m = codec_error(decode::<Table>(ValueFormat::Arrow, b"not arrow at all"));
        assert!(m.contains("Arrow IPC stream"), "{m}");
        codec_error(decode::<Table>(
            ValueFormat::Arrow,
            &arrow[..arrow.len() / 2],
        ));
        // Msgpack nil is no table, but it is a None.
        let none: Option<Table> = decode(ValueFormat::Msgpack, &[0xc0]).unwrap();
        assert!(none.is_none());
    }
}
