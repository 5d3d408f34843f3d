package ember

import (
	"github.com/ember-run/ember/sdk-go/internal/msgpack"
	"github.com/ember-run/ember/sdk-go/internal/values"
)

// Map is a msgpack map that keeps the order of its entries (a Go map is
// encoded with its keys sorted).
type Map = msgpack.Map

// MapEntry is one entry of a Map.
type MapEntry = msgpack.MapEntry

// RawMessage is an encoded msgpack value, written as is and read as is.
type RawMessage = msgpack.RawMessage

// Raw is a value stored and passed as plain bytes (format RAW), not as
// msgpack; a Go function parameter of type []byte or Raw accepts it.
type Raw = values.Raw

// Marshaler and Unmarshaler let a type encode and decode itself.
type (
	Marshaler   = msgpack.Marshaler
	Unmarshaler = msgpack.Unmarshaler
)

// Marshal encodes v in ember's canonical msgpack (the encoding of every
// SDK: the smallest integer forms, float64 floats, str for strings, bin
// for bytes, sorted keys for Go maps, structs as maps of their fields).
func Marshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal decodes msgpack data into v (a non-nil pointer).
func Unmarshal(data []byte, v any) error { return msgpack.Unmarshal(data, v) }

// UnmarshalOrdered is Unmarshal, except that maps decoded into `any`
// become Map values in the order they were read.
func UnmarshalOrdered(data []byte, v any) error { return msgpack.UnmarshalOrdered(data, v) }
