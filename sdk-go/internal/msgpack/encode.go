// Package msgpack is the MessagePack codec of the Go SDK: ember's
// cross-language value format.
//
// Encoding is canonical, byte for byte what the other SDKs produce
// (tests/vectors/msgpack.json): the smallest integer form (non-negative
// integers use the unsigned forms), floats always as float 64, Go strings
// as msgpack str, []byte as bin, slices and arrays as arrays, maps with
// their keys sorted (Map keeps a given order), structs as maps of their
// fields (names from `msgpack:"name"` tags).
package msgpack

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sort"
	"sync"
)

// Map is a msgpack map whose entries keep their order. Encoding a Go map
// sorts its keys; a Map is written in the order given, and decoding into a
// Map (or into `any` with ordered maps) keeps the order that was read.
type Map []MapEntry

// MapEntry is one key/value pair of a Map.
type MapEntry struct {
	Key   any
	Value any
}

// Get returns the value under a string key.
func (m Map) Get(key string) (any, bool) {
	for _, e := range m {
		if k, ok := e.Key.(string); ok && k == key {
			return e.Value, true
		}
	}
	return nil, false
}

// RawMessage is an already encoded msgpack value: encoded as is, and
// decoding into it keeps the bytes of one value.
type RawMessage []byte

// Marshaler is implemented by types that encode themselves (the returned
// bytes must be one complete msgpack value).
type Marshaler interface {
	MarshalMsgpack() ([]byte, error)
}

// Unmarshaler is implemented by types that decode themselves from the
// bytes of one msgpack value.
type Unmarshaler interface {
	UnmarshalMsgpack([]byte) error
}

// Marshal encodes v.
func Marshal(v any) ([]byte, error) {
	return Append(nil, v)
}

// Append encodes v after buf.
func Append(buf []byte, v any) ([]byte, error) {
	e := encoder{buf: buf}
	if err := e.encode(v); err != nil {
		return nil, err
	}
	return e.buf, nil
}

type encoder struct {
	buf   []byte
	depth int
}

const maxDepth = 10000

// UnsupportedTypeError reports a Go value with no msgpack form.
type UnsupportedTypeError struct {
	Type reflect.Type
}

func (e *UnsupportedTypeError) Error() string {
	return "msgpack: cannot encode a value of type " + e.Type.String()
}

func (e *encoder) encode(v any) error {
	// Fast paths for the common types (no reflection).
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, 0xc0)
		return nil
	case bool:
		e.writeBool(x)
		return nil
	case int:
		e.writeInt(int64(x))
		return nil
	case int64:
		e.writeInt(x)
		return nil
	case int32:
		e.writeInt(int64(x))
		return nil
	case uint64:
		e.writeUint(x)
		return nil
	case uint:
		e.writeUint(uint64(x))
		return nil
	case float64:
		e.writeFloat(x)
		return nil
	case string:
		e.writeString(x)
		return nil
	case []byte:
		if x == nil {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		e.writeBin(x)
		return nil
	case RawMessage:
		if len(x) == 0 {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		e.buf = append(e.buf, x...)
		return nil
	case Map:
		return e.writeMap(x)
	case []any:
		if x == nil {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		e.writeArrayHeader(len(x))
		return e.encodeItems(x)
	case map[string]any:
		if x == nil {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		e.writeMapHeader(len(x))
		for _, k := range keys {
			e.writeString(k)
			if err := e.nested(x[k]); err != nil {
				return err
			}
		}
		return nil
	case Marshaler:
		return e.marshaler(x)
	}
	return e.encodeValue(reflect.ValueOf(v))
}

func (e *encoder) marshaler(m Marshaler) error {
	b, err := m.MarshalMsgpack()
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("msgpack: MarshalMsgpack of %T returned no bytes", m)
	}
	e.buf = append(e.buf, b...)
	return nil
}

func (e *encoder) nested(v any) error {
	e.depth++
	if e.depth > maxDepth {
		return fmt.Errorf("msgpack: value nested deeper than %d levels (a cycle?)", maxDepth)
	}
	err := e.encode(v)
	e.depth--
	return err
}

func (e *encoder) encodeItems(items []any) error {
	for _, item := range items {
		if err := e.nested(item); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) writeMap(m Map) error {
	if m == nil {
		e.buf = append(e.buf, 0xc0)
		return nil
	}
	e.writeMapHeader(len(m))
	for _, entry := range m {
		if err := e.nested(entry.Key); err != nil {
			return err
		}
		if err := e.nested(entry.Value); err != nil {
			return err
		}
	}
	return nil
}

var (
	marshalerType = reflect.TypeFor[Marshaler]()
	bytesType     = reflect.TypeFor[[]byte]()
)

func (e *encoder) encodeValue(v reflect.Value) error {
	if !v.IsValid() {
		e.buf = append(e.buf, 0xc0)
		return nil
	}
	t := v.Type()
	switch t {
	case rawType:
		return e.encode(RawMessage(v.Bytes()))
	case mapType:
		return e.writeMap(v.Interface().(Map))
	}
	if t.Implements(marshalerType) {
		if (t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface) && v.IsNil() {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		return e.marshaler(v.Interface().(Marshaler))
	}
	switch t.Kind() {
	case reflect.Bool:
		e.writeBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.writeInt(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.writeUint(v.Uint())
	case reflect.Float32, reflect.Float64:
		e.writeFloat(v.Float())
	case reflect.String:
		e.writeString(v.String())
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		e.depth++
		if e.depth > maxDepth {
			return fmt.Errorf("msgpack: value nested deeper than %d levels (a cycle?)", maxDepth)
		}
		err := e.encodeValue(v.Elem())
		e.depth--
		return err
	case reflect.Slice:
		if v.IsNil() {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		if t.Elem().Kind() == reflect.Uint8 {
			e.writeBin(v.Bytes())
			return nil
		}
		return e.encodeList(v)
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			b := make([]byte, v.Len())
			reflect.Copy(reflect.ValueOf(b), v)
			e.writeBin(b)
			return nil
		}
		return e.encodeList(v)
	case reflect.Map:
		if v.IsNil() {
			e.buf = append(e.buf, 0xc0)
			return nil
		}
		return e.encodeMap(v)
	case reflect.Struct:
		return e.encodeStruct(v)
	default:
		return &UnsupportedTypeError{Type: t}
	}
	return nil
}

func (e *encoder) encodeList(v reflect.Value) error {
	n := v.Len()
	e.writeArrayHeader(n)
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		return fmt.Errorf("msgpack: value nested deeper than %d levels (a cycle?)", maxDepth)
	}
	for i := 0; i < n; i++ {
		if err := e.encodeValue(v.Index(i)); err != nil {
			return err
		}
	}
	return nil
}

// encodeMap writes a Go map with its keys in a stable order: strings
// sorted, other keys by their encoded bytes.
func (e *encoder) encodeMap(v reflect.Value) error {
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		return fmt.Errorf("msgpack: value nested deeper than %d levels (a cycle?)", maxDepth)
	}
	type kv struct {
		key []byte
		str string
		val reflect.Value
	}
	entries := make([]kv, 0, v.Len())
	stringKeys := v.Type().Key().Kind() == reflect.String
	iter := v.MapRange()
	for iter.Next() {
		sub := encoder{depth: e.depth}
		if err := sub.encodeValue(iter.Key()); err != nil {
			return err
		}
		entry := kv{key: sub.buf, val: iter.Value()}
		if stringKeys {
			entry.str = iter.Key().String()
		}
		entries = append(entries, entry)
	}
	if stringKeys {
		sort.Slice(entries, func(i, j int) bool { return entries[i].str < entries[j].str })
	} else {
		sort.Slice(entries, func(i, j int) bool { return bytes.Compare(entries[i].key, entries[j].key) < 0 })
	}
	e.writeMapHeader(len(entries))
	for _, entry := range entries {
		e.buf = append(e.buf, entry.key...)
		if err := e.encodeValue(entry.val); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) encodeStruct(v reflect.Value) error {
	info := structInfoOf(v.Type())
	if info.refuse != nil {
		return info.refuse
	}
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		return fmt.Errorf("msgpack: value nested deeper than %d levels (a cycle?)", maxDepth)
	}
	// Count the fields written (omitempty and nil embedded pointers drop some).
	fields := make([]reflect.Value, len(info.fields))
	n := 0
	for i, f := range info.fields {
		fv, ok := fieldByIndex(v, f.index)
		if !ok || (f.omitEmpty && fv.IsZero()) {
			continue
		}
		fields[i] = fv
		n++
	}
	e.writeMapHeader(n)
	for i, f := range info.fields {
		if !fields[i].IsValid() {
			continue
		}
		e.writeString(f.name)
		if err := e.encodeValue(fields[i]); err != nil {
			return fmt.Errorf("field %s: %w", f.name, err)
		}
	}
	return nil
}

// fieldByIndex follows an embedded path; false when it passes a nil pointer.
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

func (e *encoder) writeBool(b bool) {
	if b {
		e.buf = append(e.buf, 0xc3)
	} else {
		e.buf = append(e.buf, 0xc2)
	}
}

func (e *encoder) writeInt(n int64) {
	if n >= 0 {
		e.writeUint(uint64(n))
		return
	}
	switch {
	case n >= -32:
		e.buf = append(e.buf, byte(n))
	case n >= math.MinInt8:
		e.buf = append(e.buf, 0xd0, byte(n))
	case n >= math.MinInt16:
		e.buf = binary.BigEndian.AppendUint16(append(e.buf, 0xd1), uint16(n))
	case n >= math.MinInt32:
		e.buf = binary.BigEndian.AppendUint32(append(e.buf, 0xd2), uint32(n))
	default:
		e.buf = binary.BigEndian.AppendUint64(append(e.buf, 0xd3), uint64(n))
	}
}

func (e *encoder) writeUint(n uint64) {
	switch {
	case n <= 0x7f:
		e.buf = append(e.buf, byte(n))
	case n <= math.MaxUint8:
		e.buf = append(e.buf, 0xcc, byte(n))
	case n <= math.MaxUint16:
		e.buf = binary.BigEndian.AppendUint16(append(e.buf, 0xcd), uint16(n))
	case n <= math.MaxUint32:
		e.buf = binary.BigEndian.AppendUint32(append(e.buf, 0xce), uint32(n))
	default:
		e.buf = binary.BigEndian.AppendUint64(append(e.buf, 0xcf), n)
	}
}

func (e *encoder) writeFloat(f float64) {
	e.buf = binary.BigEndian.AppendUint64(append(e.buf, 0xcb), math.Float64bits(f))
}

func (e *encoder) writeString(s string) {
	n := len(s)
	switch {
	case n <= 31:
		e.buf = append(e.buf, 0xa0|byte(n))
	case n <= math.MaxUint8:
		e.buf = append(e.buf, 0xd9, byte(n))
	case n <= math.MaxUint16:
		e.buf = binary.BigEndian.AppendUint16(append(e.buf, 0xda), uint16(n))
	default:
		e.buf = binary.BigEndian.AppendUint32(append(e.buf, 0xdb), uint32(n))
	}
	e.buf = append(e.buf, s...)
}

func (e *encoder) writeBin(b []byte) {
	n := len(b)
	switch {
	case n <= math.MaxUint8:
		e.buf = append(e.buf, 0xc4, byte(n))
	case n <= math.MaxUint16:
		e.buf = binary.BigEndian.AppendUint16(append(e.buf, 0xc5), uint16(n))
	default:
		e.buf = binary.BigEndian.AppendUint32(append(e.buf, 0xc6), uint32(n))
	}
	e.buf = append(e.buf, b...)
}

func (e *encoder) writeArrayHeader(n int) {
	switch {
	case n <= 15:
		e.buf = append(e.buf, 0x90|byte(n))
	case n <= math.MaxUint16:
		e.buf = binary.BigEndian.AppendUint16(append(e.buf, 0xdc), uint16(n))
	default:
		e.buf = binary.BigEndian.AppendUint32(append(e.buf, 0xdd), uint32(n))
	}
}

func (e *encoder) writeMapHeader(n int) {
	switch {
	case n <= 15:
		e.buf = append(e.buf, 0x80|byte(n))
	case n <= math.MaxUint16:
		e.buf = binary.BigEndian.AppendUint16(append(e.buf, 0xde), uint16(n))
	default:
		e.buf = binary.BigEndian.AppendUint32(append(e.buf, 0xdf), uint32(n))
	}
}

// Struct field tables, cached per type.

type fieldInfo struct {
	name      string
	index     []int
	omitEmpty bool
}

type structInfo struct {
	fields []fieldInfo
	byName map[string]int
	// Lowercased names, for a case-insensitive fallback when decoding.
	byFold map[string]int
	// Why a value of this type cannot be encoded (RefuseStruct), or nil.
	refuse error
}

var structCache sync.Map // reflect.Type -> *structInfo

// RefuseStruct, when set (once, before any encoding), says why values of
// a struct type must not be encoded as msgpack maps (nil: they may). It is
// asked once per type (the answer is cached with the type's fields), so
// it costs nothing per value.
var RefuseStruct func(reflect.Type) error

func structInfoOf(t reflect.Type) *structInfo {
	if cached, ok := structCache.Load(t); ok {
		return cached.(*structInfo)
	}
	info := &structInfo{byName: map[string]int{}, byFold: map[string]int{}}
	collectFields(t, nil, info, map[reflect.Type]bool{})
	if RefuseStruct != nil {
		info.refuse = RefuseStruct(t)
	}
	for i, f := range info.fields {
		info.byName[f.name] = i
		fold := foldName(f.name)
		if _, taken := info.byFold[fold]; !taken {
			info.byFold[fold] = i
		}
	}
	cached, _ := structCache.LoadOrStore(t, info)
	return cached.(*structInfo)
}

func collectFields(t reflect.Type, prefix []int, info *structInfo, seen map[reflect.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, hasTag := f.Tag.Lookup("msgpack")
		if tag == "-" {
			continue
		}
		name, opts := tag, ""
		if comma := indexByte(tag, ','); comma >= 0 {
			name, opts = tag[:comma], tag[comma+1:]
		}
		index := append(append([]int{}, prefix...), i)
		ft := f.Type
		if f.Anonymous && (!hasTag || name == "") {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collectFields(ft, index, info, seen)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		omit := false
		for opts != "" {
			opt := opts
			if comma := indexByte(opts, ','); comma >= 0 {
				opt, opts = opts[:comma], opts[comma+1:]
			} else {
				opts = ""
			}
			if opt == "omitempty" {
				omit = true
			}
		}
		// A field of an outer struct wins over an embedded one of the same name.
		replaced := false
		for j, existing := range info.fields {
			if existing.name == name {
				if len(existing.index) > len(index) {
					info.fields[j] = fieldInfo{name: name, index: index, omitEmpty: omit}
				}
				replaced = true
				break
			}
		}
		if !replaced {
			info.fields = append(info.fields, fieldInfo{name: name, index: index, omitEmpty: omit})
		}
	}
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func foldName(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}
