//! Values on the wire: MessagePack in ember's canonical form.
//!
//! [`to_msgpack`] is a serde serializer written for the canonical form every
//! SDK produces (see `tests/vectors/msgpack.json`):
//!
//! - integers in their smallest encoding (positive fixint, uint8..64 for
//!   values >= 0, negative fixint, int8..64 for negative ones), whatever the
//!   Rust integer type;
//! - floats always float 64 (an `f32` is widened);
//! - `String`/`&str`/`char` as msgpack str; `serde_bytes` values
//!   (`ByteBuf`, `#[serde(with = "serde_bytes")]`) and non-empty `Vec<u8>` /
//!   `&[u8]` as bin;
//! - sequences as arrays, maps in their iteration order, structs as maps
//!   keyed by field name (in declaration order);
//! - `None`, `()` and unit structs as nil; enums as rmp-serde writes them
//!   (a unit variant is its name, other variants `{name: value}`).
//!
//! [`from_msgpack`] decodes with `rmp-serde`, which reads any msgpack (a
//! float 32 into an `f64`, an int into a float, bin or array into a `Vec<u8>`).
//!
//! Values of every format: [`encode`] gives a value's format and bytes
//! (`MSGPACK`, or `ARROW` for a [`Table`](crate::Table): its Arrow IPC
//! stream; see [`table`](crate::table) for how the codec recognises one),
//! [`decode`] reads `MSGPACK`, `RAW` (as bytes) and `ARROW` (as a `Table`)
//! values into a type.

use bytes::Bytes;
use ember_proto::v1::ValueFormat;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::ser::{self, Serialize};

use crate::table::TABLE_MARKER;
use crate::Error;

/// A value as it travels: its format and bytes (a worker function's
/// arguments and result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub format: ValueFormat,
    pub data: Bytes,
}

/// Encode `value` as canonical msgpack. A [`Table`](crate::Table) (an
/// `ARROW` value, not msgpack) fails: use [`encode`].
pub fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64);
    value
        .serialize(&mut Encoder {
            out: &mut out,
            arrow: ArrowState::Refused,
        })
        .map_err(|e| Error::Codec(format!("cannot encode the value as msgpack: {}", e.0)))?;
    Ok(out)
}

/// Append `value`'s canonical msgpack to `out`.
pub fn to_msgpack_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    value
        .serialize(&mut Encoder {
            out,
            arrow: ArrowState::Refused,
        })
        .map_err(|e| Error::Codec(format!("cannot encode the value as msgpack: {}", e.0)))
}

/// Encode `value` as the value ember stores or sends: `ARROW` (its IPC
/// stream) when it is a [`Table`](crate::Table) (or `Some(table)`, or a
/// newtype struct around one), else `MSGPACK` in the canonical form. A
/// `Table` inside another value fails.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<(ValueFormat, Vec<u8>), Error> {
    let mut arrow = false;
    let data = encode_flagged(value, &mut arrow)?;
    let format = if arrow {
        ValueFormat::Arrow
    } else {
        ValueFormat::Msgpack
    };
    Ok((format, data))
}

/// [`encode`], the format as a flag (`arrow`: the bytes are an Arrow IPC
/// stream): a smaller result, for the hot paths (a call's arguments, a
/// function's result).
#[inline]
pub(crate) fn encode_flagged<T: Serialize + ?Sized>(
    value: &T,
    arrow: &mut bool,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64);
    let mut enc = Encoder {
        out: &mut out,
        arrow: ArrowState::Allowed,
    };
    if let Err(e) = value.serialize(&mut enc) {
        return Err(encode_error(e));
    }
    if let ArrowState::Written(len) = enc.arrow {
        check_whole_table(&out, len)?;
        *arrow = true;
    }
    Ok(out)
}

#[cold]
fn encode_error(e: EncodeError) -> Error {
    Error::Codec(format!("cannot encode the value: {}", e.0))
}

/// The encoded table must be all there is: nothing went around it
/// afterwards (a sequence of unknown length puts its header in front at
/// the end).
#[cold]
fn check_whole_table(out: &[u8], len: usize) -> Result<(), Error> {
    if len == out.len() {
        Ok(())
    } else {
        Err(Error::Codec(TABLE_NOT_WHOLE.into()))
    }
}

const TABLE_NOT_WHOLE: &str = "an ember::Table can only be a whole value (a put, an argument, \
                               a result), not part of one: msgpack has no place for it";

/// Decode a value of `format` into a `T`: `MSGPACK` (any msgpack), `RAW`
/// (into bytes: `ByteBuf`, `Vec<u8>`), `ARROW` (into a
/// [`Table`](crate::Table), or `Option<Table>`). Anything else, and an
/// `ARROW` value asked for as another type or a `MSGPACK` value asked for
/// as a `Table`, fails with [`Error::Codec`].
pub fn decode<T: DeserializeOwned>(format: ValueFormat, data: &[u8]) -> Result<T, Error> {
    match format {
        ValueFormat::Msgpack => from_msgpack(data),
        ValueFormat::Raw => from_msgpack(&raw_as_msgpack(data)),
        ValueFormat::Arrow => T::deserialize(ArrowReader(data)).map_err(|e| {
            Error::Codec(format!(
                "cannot decode an ARROW value into {}: {}",
                std::any::type_name::<T>(),
                e.0
            ))
        }),
        other => Err(Error::Codec(format!(
            "a {} value cannot be decoded by the Rust SDK (read it with get_bytes)",
            other.as_str_name()
        ))),
    }
}

/// RAW bytes as a msgpack bin, so they decode into any bytes type.
pub(crate) fn raw_as_msgpack(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5);
    let len = data.len() as u32;
    if len <= u8::MAX as u32 {
        out.extend_from_slice(&[0xc4, len as u8]);
    } else if len <= u16::MAX as u32 {
        out.push(0xc5);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// A decoding error (the message only).
#[derive(Debug)]
pub struct DecodeError(String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DecodeError(msg.to_string())
    }
}

/// Reads an `ARROW` value: it answers a [`Table`](crate::Table)'s request
/// (the marker newtype struct) with the stream's bytes, `Option` with
/// `Some`, other newtype structs with their content, and refuses anything
/// else.
struct ArrowReader<'de>(&'de [u8]);

impl<'de> Deserializer<'de> for ArrowReader<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DecodeError> {
        Err(DecodeError(
            "an ARROW value (an Arrow table) can only be decoded into ember::Table \
             (read its bytes with get_bytes)"
                .into(),
        ))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        if name == TABLE_MARKER {
            visitor.visit_borrowed_bytes(self.0)
        } else {
            visitor.visit_newtype_struct(self)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

/// Decode msgpack `bytes` into a `T`.
pub fn from_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let value = T::deserialize(&mut de).map_err(|e| {
        Error::Codec(format!(
            "cannot decode msgpack into {}: {e}",
            std::any::type_name::<T>()
        ))
    })?;
    let rest = bytes.len() - de.position() as usize;
    if rest != 0 {
        return Err(Error::Codec(format!(
            "msgpack value decoded into {} is followed by {rest} more bytes",
            std::any::type_name::<T>()
        )));
    }
    Ok(value)
}

/// An encoding error (the message only).
#[derive(Debug)]
pub struct EncodeError(String);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

fn len32(len: usize, what: &str) -> Result<u32, EncodeError> {
    u32::try_from(len)
        .map_err(|_| EncodeError(format!("{what} of {len} elements is too long for msgpack")))
}

// Writing into a Vec cannot fail: these helpers drop the impossible errors.

fn put_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
    } else if v <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        put_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    let len = len32(s.len(), "a string")?;
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= u8::MAX as u32 {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= u16::MAX as u32 {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn bin_header(len: u32) -> ([u8; 5], usize) {
    let mut h = [0u8; 5];
    if len <= u8::MAX as u32 {
        h[0] = 0xc4;
        h[1] = len as u8;
        (h, 2)
    } else if len <= u16::MAX as u32 {
        h[0] = 0xc5;
        h[1..3].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 3)
    } else {
        h[0] = 0xc6;
        h[1..5].copy_from_slice(&len.to_be_bytes());
        (h, 5)
    }
}

fn put_bin(out: &mut Vec<u8>, b: &[u8]) -> Result<(), EncodeError> {
    let (h, n) = bin_header(len32(b.len(), "a byte string")?);
    out.reserve(n + b.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(b);
    Ok(())
}

/// The header of an array (`map == false`) or map of `len` elements.
fn container_header(len: u32, map: bool) -> ([u8; 5], usize) {
    let mut h = [0u8; 5];
    if len < 16 {
        h[0] = if map { 0x80 } else { 0x90 } | len as u8;
        (h, 1)
    } else if len <= u16::MAX as u32 {
        h[0] = if map { 0xde } else { 0xdc };
        h[1..3].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 3)
    } else {
        h[0] = if map { 0xdf } else { 0xdd };
        h[1..5].copy_from_slice(&len.to_be_bytes());
        (h, 5)
    }
}

fn put_header(out: &mut Vec<u8>, len: u32, map: bool) {
    let (h, n) = container_header(len, map);
    out.extend_from_slice(&h[..n]);
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    arrow: ArrowState,
}

/// Whether the encoder takes a [`Table`](crate::Table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArrowState {
    /// No (msgpack only).
    Refused,
    /// As the whole value.
    Allowed,
    /// One was written: `out` held this many bytes then.
    Written(usize),
}

impl<'a, 'b> ser::Serializer for &'b mut Encoder<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Seq<'a, 'b>;
    type SerializeTuple = Compound<'a, 'b>;
    type SerializeTupleStruct = Compound<'a, 'b>;
    type SerializeTupleVariant = Compound<'a, 'b>;
    type SerializeMap = MapCompound<'a, 'b>;
    type SerializeStruct = Compound<'a, 'b>;
    type SerializeStructVariant = Compound<'a, 'b>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        put_int(self.out, v as i64);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        put_int(self.out, v as i64);
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        put_int(self.out, v as i64);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        put_int(self.out, v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        if let Ok(v) = i64::try_from(v) {
            put_int(self.out, v);
        } else if let Ok(v) = u64::try_from(v) {
            put_uint(self.out, v);
        } else {
            return Err(EncodeError(format!(
                "integer {v} does not fit in msgpack's 64 bits"
            )));
        }
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        put_uint(self.out, v as u64);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        put_uint(self.out, v as u64);
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        put_uint(self.out, v as u64);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        put_uint(self.out, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        match u64::try_from(v) {
            Ok(v) => {
                put_uint(self.out, v);
                Ok(())
            }
            Err(_) => Err(EncodeError(format!(
                "integer {v} does not fit in msgpack's 64 bits"
            ))),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        put_f64(self.out, v as f64);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        put_f64(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        let mut buf = [0u8; 4];
        put_str(self.out, v.encode_utf8(&mut buf))
    }
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        put_str(self.out, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        put_bin(self.out, v)
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        put_str(self.out, variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        if name == TABLE_MARKER {
            return self.table(value);
        }
        if name == "_ExtStruct" {
            return Err(EncodeError("msgpack ext values are not supported".into()));
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        put_header(self.out, 1, true);
        put_str(self.out, variant)?;
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a, 'b>, EncodeError> {
        let start = self.out.len();
        let len = len.map(|len| len32(len, "a sequence")).transpose()?;
        Ok(Seq {
            enc: self,
            start,
            len,
            header_written: false,
            count: 0,
            bytes: Some(Vec::new()),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'b>, EncodeError> {
        put_header(self.out, len32(len, "a tuple")?, false);
        Ok(Compound { enc: self })
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        put_header(self.out, len32(len, "a tuple struct")?, false);
        Ok(Compound { enc: self })
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        put_header(self.out, 1, true);
        put_str(self.out, variant)?;
        put_header(self.out, len32(len, "a tuple variant")?, false);
        Ok(Compound { enc: self })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapCompound<'a, 'b>, EncodeError> {
        let start = self.out.len();
        match len {
            Some(len) => {
                put_header(self.out, len32(len, "a map")?, true);
                Ok(MapCompound {
                    enc: self,
                    start,
                    count: 0,
                    known: true,
                })
            }
            None => Ok(MapCompound {
                enc: self,
                start,
                count: 0,
                known: false,
            }),
        }
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        put_header(self.out, len32(len, "a struct")?, true);
        Ok(Compound { enc: self })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        put_header(self.out, 1, true);
        put_str(self.out, variant)?;
        put_header(self.out, len32(len, "a struct variant")?, true);
        Ok(Compound { enc: self })
    }
}

impl Encoder<'_> {
    /// A [`Table`](crate::Table) (`value` serializes its IPC stream as
    /// bytes): the whole output, when tables are allowed.
    fn table<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        match self.arrow {
            ArrowState::Refused => Err(EncodeError(
                "an ember::Table is an ARROW value, not msgpack (encode it with codec::encode)"
                    .into(),
            )),
            ArrowState::Allowed if self.out.is_empty() => {
                value.serialize(BytesSink { out: self.out })?;
                self.arrow = ArrowState::Written(self.out.len());
                Ok(())
            }
            _ => Err(EncodeError(TABLE_NOT_WHOLE.into())),
        }
    }
}

/// Takes one byte string (a table's IPC stream) as it is.
struct BytesSink<'a> {
    out: &'a mut Vec<u8>,
}

macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ret, EncodeError> {
            Err(EncodeError("a table serializes as bytes".into()))
        })*
    };
}

type NoBytes = ser::Impossible<(), EncodeError>;

impl ser::Serializer for BytesSink<'_> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = NoBytes;
    type SerializeTuple = NoBytes;
    type SerializeTupleStruct = NoBytes;
    type SerializeTupleVariant = NoBytes;
    type SerializeMap = NoBytes;
    type SerializeStruct = NoBytes;
    type SerializeStructVariant = NoBytes;

    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        self.out.extend_from_slice(v);
        Ok(())
    }

    refuse! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> NoBytes;
        serialize_tuple(usize) -> NoBytes;
        serialize_tuple_struct(&'static str, usize) -> NoBytes;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> NoBytes;
        serialize_map(Option<usize>) -> NoBytes;
        serialize_struct(&'static str, usize) -> NoBytes;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> NoBytes;
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), EncodeError> {
        Err(EncodeError("a table serializes as bytes".into()))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), EncodeError> {
        Err(EncodeError("a table serializes as bytes".into()))
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), EncodeError> {
        Err(EncodeError("a table serializes as bytes".into()))
    }
}

/// Tuples, structs and variants: the header is written up front.
pub(crate) struct Compound<'a, 'b> {
    enc: &'b mut Encoder<'a>,
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        put_str(self.enc.out, key)?;
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        put_str(self.enc.out, key)?;
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// A sequence. While every element so far is a `u8` the elements are
/// collected as bytes (a `Vec<u8>` becomes bin); the header goes in front
/// at the end, when the count and the kind are known.
pub(crate) struct Seq<'a, 'b> {
    enc: &'b mut Encoder<'a>,
    start: usize,
    /// The announced length, if any.
    len: Option<u32>,
    /// The array header is in place (the first element was not a byte).
    header_written: bool,
    count: u32,
    /// `Some` while every element was a u8.
    bytes: Option<Vec<u8>>,
}

impl ser::SerializeSeq for Seq<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.count = self
            .count
            .checked_add(1)
            .ok_or_else(|| EncodeError("a sequence is too long for msgpack".into()))?;
        if let Some(bytes) = &mut self.bytes {
            if let Ok(b) = value.serialize(ByteProbe) {
                bytes.push(b);
                return Ok(());
            }
            // Not bytes after all: the bytes so far are small ints.
            let bytes = self.bytes.take().unwrap_or_default();
            if bytes.is_empty() {
                if let Some(len) = self.len {
                    put_header(self.enc.out, len, false);
                    self.header_written = true;
                }
            }
            for b in bytes {
                put_uint(self.enc.out, b as u64);
            }
        }
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        let out = &mut *self.enc.out;
        match self.bytes {
            Some(bytes) if !bytes.is_empty() => put_bin(out, &bytes),
            _ if self.header_written => {
                if self.len != Some(self.count) {
                    return Err(EncodeError(format!(
                        "a sequence announced {:?} elements and had {}",
                        self.len, self.count
                    )));
                }
                Ok(())
            }
            _ => {
                let (h, n) = container_header(self.count, false);
                out.splice(self.start..self.start, h[..n].iter().copied());
                Ok(())
            }
        }
    }
}

/// Maps: the header is written first when the length is known, inserted at
/// the end otherwise.
pub(crate) struct MapCompound<'a, 'b> {
    enc: &'b mut Encoder<'a>,
    start: usize,
    count: u32,
    known: bool,
}

impl ser::SerializeMap for MapCompound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.count = self
            .count
            .checked_add(1)
            .ok_or_else(|| EncodeError("a map is too long for msgpack".into()))?;
        key.serialize(&mut *self.enc)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        if !self.known {
            let (h, n) = container_header(self.count, true);
            self.enc
                .out
                .splice(self.start..self.start, h[..n].iter().copied());
        }
        Ok(())
    }
}

/// Accepts exactly one `u8`, refuses everything else.
struct ByteProbe;

#[derive(Debug)]
struct NotAByte;

impl std::fmt::Display for NotAByte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a byte")
    }
}

impl std::error::Error for NotAByte {}

impl ser::Error for NotAByte {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        NotAByte
    }
}

type No = ser::Impossible<u8, NotAByte>;

impl ser::Serializer for ByteProbe {
    type Ok = u8;
    type Error = NotAByte;
    type SerializeSeq = No;
    type SerializeTuple = No;
    type SerializeTupleStruct = No;
    type SerializeTupleVariant = No;
    type SerializeMap = No;
    type SerializeStruct = No;
    type SerializeStructVariant = No;

    fn serialize_u8(self, v: u8) -> Result<u8, NotAByte> {
        Ok(v)
    }
    fn serialize_bool(self, _: bool) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_i8(self, _: i8) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_i16(self, _: i16) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_i32(self, _: i32) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_i64(self, _: i64) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_u16(self, _: u16) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_u32(self, _: u32) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_u64(self, _: u64) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_f32(self, _: f32) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_f64(self, _: f64) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_char(self, _: char) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_str(self, _: &str) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_none(self) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_unit(self) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<No, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_tuple(self, _: usize) -> Result<No, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<No, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<No, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<No, NotAByte> {
        Err(NotAByte)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, NotAByte> {
        Err(NotAByte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn hex_of<T: Serialize + ?Sized>(v: &T) -> String {
        hex::encode(to_msgpack(v).unwrap())
    }

    #[test]
    fn ints_are_compact_whatever_their_type() {
        assert_eq!(hex_of(&5u64), "05");
        assert_eq!(hex_of(&5i8), "05");
        assert_eq!(hex_of(&200i64), "ccc8");
        assert_eq!(hex_of(&-1i64), "ff");
        assert_eq!(hex_of(&-200i32), "d1ff38");
        assert_eq!(hex_of(&(u64::MAX as i128)), "cfffffffffffffffff");
        assert!(to_msgpack(&(u64::MAX as u128 + 1)).is_err());
    }

    #[test]
    fn floats_are_float64() {
        assert_eq!(hex_of(&1.5f32), "cb3ff8000000000000");
        assert_eq!(hex_of(&1.5f64), "cb3ff8000000000000");
    }

    #[test]
    fn byte_vectors_are_bin_and_other_sequences_arrays() {
        assert_eq!(hex_of(&vec![1u8, 2, 255]), "c4030102ff");
        assert_eq!(hex_of(&[1u8, 2][..]), "c4020102");
        assert_eq!(hex_of(&Vec::<u8>::new()), "90");
        assert_eq!(hex_of(&vec![1u16, 2]), "920102");
        assert_eq!(hex_of(&vec![1i64, 300]), "9201cd012c");
        // A fixed-size array is a tuple: ints.
        assert_eq!(hex_of(&[1u8, 2]), "920102");
        let back: Vec<u8> = from_msgpack(&to_msgpack(&vec![7u8; 300]).unwrap()).unwrap();
        assert_eq!(back, vec![7u8; 300]);
    }

    #[test]
    fn unknown_length_sequences_get_the_right_header() {
        struct Unsized(Vec<i64>);
        impl Serialize for Unsized {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                for v in &self.0 {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
        let v: Vec<i64> = (0..20).collect();
        assert_eq!(
            to_msgpack(&Unsized(v.clone())).unwrap(),
            to_msgpack(&v).unwrap()
        );
        assert_eq!(hex_of(&Unsized(vec![])), "90");
    }

    #[test]
    fn structs_are_maps_by_field_name() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct P {
            x: i32,
            name: String,
            tags: Option<Vec<String>>,
        }
        let p = P {
            x: 1,
            name: "a".into(),
            tags: None,
        };
        assert_eq!(hex_of(&p), "83a17801a46e616d65a161a474616773c0");
        let back: P = from_msgpack(&to_msgpack(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn enums_round_trip() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        enum E {
            Unit,
            New(i32),
            Tuple(i32, String),
            Struct { a: bool },
        }
        for e in [
            E::Unit,
            E::New(3),
            E::Tuple(1, "x".into()),
            E::Struct { a: true },
        ] {
            let back: E = from_msgpack(&to_msgpack(&e).unwrap()).unwrap();
            assert_eq!(back, e);
        }
        assert_eq!(hex_of(&E::Unit), "a4556e6974");
    }

    #[test]
    fn maps_keep_their_order_and_trailing_bytes_are_refused() {
        let mut m = BTreeMap::new();
        m.insert("b", 2);
        m.insert("a", 1);
        assert_eq!(hex_of(&m), "82a16101a16202");
        assert!(from_msgpack::<i64>(&[0x01, 0x02]).is_err());
    }
}
