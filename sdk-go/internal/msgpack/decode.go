package msgpack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
)

// Unmarshal decodes one msgpack value from data into v (a non-nil pointer).
// Bytes after the value are an error.
//
// Into `any`: nil, bool, int64 (uint64 for integers above MaxInt64),
// float64, string, []byte, []any, and map[string]any when every key is a
// string (map[any]any otherwise).
func Unmarshal(data []byte, v any) error {
	return unmarshal(data, v, false)
}

// UnmarshalOrdered is Unmarshal, except that maps decoded into `any`
// become Map values that keep the order of their entries.
func UnmarshalOrdered(data []byte, v any) error {
	return unmarshal(data, v, true)
}

func unmarshal(data []byte, v any, ordered bool) error {
	d := decoder{data: data, ordered: ordered}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("msgpack: Unmarshal needs a non-nil pointer, got %T", v)
	}
	if err := d.decodeFast(v, rv); err != nil {
		return err
	}
	if d.pos != len(d.data) {
		return fmt.Errorf("msgpack: %d bytes left after the value", len(d.data)-d.pos)
	}
	return nil
}

// decodeFast decodes into the common pointer types without reflection.
func (d *decoder) decodeFast(v any, rv reflect.Value) error {
	switch p := v.(type) {
	case *any:
		x, err := d.decodeAny()
		if err != nil {
			return err
		}
		*p = x
		return nil
	case *int, *int64:
		k, _, err := d.peek()
		if err != nil {
			return err
		}
		if k != kInt && k != kUint {
			break
		}
		s, u, unsigned, err := d.readInt()
		if err != nil {
			return err
		}
		if unsigned {
			if u > math.MaxInt64 {
				return fmt.Errorf("msgpack: integer %d overflows %s", u, rv.Type().Elem())
			}
			s = int64(u)
		}
		if q, ok := p.(*int); ok {
			if int64(int(s)) != s {
				return fmt.Errorf("msgpack: integer %d overflows int", s)
			}
			*q = int(s)
		} else {
			*p.(*int64) = s
		}
		return nil
	case *float64:
		k, _, err := d.peek()
		if err != nil {
			return err
		}
		if k != kFloat {
			break
		}
		f, err := d.readFloat()
		if err != nil {
			return err
		}
		*p = f
		return nil
	case *string:
		k, _, err := d.peek()
		if err != nil {
			return err
		}
		if k != kStr {
			break
		}
		body, err := d.readBytes()
		if err != nil {
			return err
		}
		*p = string(body)
		return nil
	}
	return d.decodeInto(rv.Elem())
}

// ErrShort reports input that ends inside a value.
var ErrShort = errors.New("msgpack: unexpected end of data")

// TypeError reports a msgpack value that does not fit the Go type asked for.
type TypeError struct {
	Value string // the msgpack kind read, e.g. "str"
	Type  reflect.Type
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("msgpack: cannot decode a %s into a Go value of type %s", e.Value, e.Type)
}

type decoder struct {
	data    []byte
	pos     int
	depth   int
	ordered bool
}

func (d *decoder) byte1() (byte, error) {
	if d.pos >= len(d.data) {
		return 0, ErrShort
	}
	b := d.data[d.pos]
	d.pos++
	return b, nil
}

func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || len(d.data)-d.pos < n {
		return nil, ErrShort
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *decoder) uintN(n int) (uint64, error) {
	b, err := d.take(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	default:
		return binary.BigEndian.Uint64(b), nil
	}
}

// kind of the next value, without consuming it.
type kind int

const (
	kNil kind = iota
	kBool
	kInt   // signed (negative forms)
	kUint  // non-negative
	kFloat // float32 or float64
	kStr
	kBin
	kArray
	kMap
	kExt
)

var kindNames = [...]string{"nil", "bool", "int", "int", "float", "str", "bin", "array", "map", "ext"}

func (k kind) String() string { return kindNames[k] }

func (d *decoder) peek() (kind, byte, error) {
	if d.pos >= len(d.data) {
		return 0, 0, ErrShort
	}
	b := d.data[d.pos]
	switch {
	case b <= 0x7f:
		return kUint, b, nil
	case b >= 0xe0:
		return kInt, b, nil
	case b >= 0x80 && b <= 0x8f:
		return kMap, b, nil
	case b >= 0x90 && b <= 0x9f:
		return kArray, b, nil
	case b >= 0xa0 && b <= 0xbf:
		return kStr, b, nil
	}
	switch b {
	case 0xc0:
		return kNil, b, nil
	case 0xc2, 0xc3:
		return kBool, b, nil
	case 0xc4, 0xc5, 0xc6:
		return kBin, b, nil
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return kExt, b, nil
	case 0xca, 0xcb:
		return kFloat, b, nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		return kUint, b, nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		return kInt, b, nil
	case 0xd9, 0xda, 0xdb:
		return kStr, b, nil
	case 0xdc, 0xdd:
		return kArray, b, nil
	case 0xde, 0xdf:
		return kMap, b, nil
	}
	return 0, b, fmt.Errorf("msgpack: invalid type byte 0x%02x at offset %d", b, d.pos)
}

func (d *decoder) readInt() (int64, uint64, bool, error) {
	// Returns (signed, unsigned, isUnsigned, err).
	b, err := d.byte1()
	if err != nil {
		return 0, 0, false, err
	}
	switch {
	case b <= 0x7f:
		return 0, uint64(b), true, nil
	case b >= 0xe0:
		return int64(int8(b)), 0, false, nil
	}
	switch b {
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err := d.uintN(1 << (b - 0xcc))
		return 0, u, true, err
	case 0xd0:
		u, err := d.uintN(1)
		return int64(int8(u)), 0, false, err
	case 0xd1:
		u, err := d.uintN(2)
		return int64(int16(u)), 0, false, err
	case 0xd2:
		u, err := d.uintN(4)
		return int64(int32(u)), 0, false, err
	case 0xd3:
		u, err := d.uintN(8)
		return int64(u), 0, false, err
	}
	return 0, 0, false, fmt.Errorf("msgpack: 0x%02x is not an integer", b)
}

func (d *decoder) readFloat() (float64, error) {
	b, err := d.byte1()
	if err != nil {
		return 0, err
	}
	if b == 0xca {
		u, err := d.uintN(4)
		return float64(math.Float32frombits(uint32(u))), err
	}
	u, err := d.uintN(8)
	return math.Float64frombits(u), err
}

// readBytes returns the body of a str or bin (a view into the input).
func (d *decoder) readBytes() ([]byte, error) {
	b, err := d.byte1()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case b >= 0xa0 && b <= 0xbf:
		n = uint64(b & 0x1f)
	case b == 0xd9 || b == 0xc4:
		n, err = d.uintN(1)
	case b == 0xda || b == 0xc5:
		n, err = d.uintN(2)
	case b == 0xdb || b == 0xc6:
		n, err = d.uintN(4)
	default:
		return nil, fmt.Errorf("msgpack: 0x%02x is not a str or bin", b)
	}
	if err != nil {
		return nil, err
	}
	return d.take(int(n))
}

func (d *decoder) readLen() (int, error) {
	b, err := d.byte1()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case b >= 0x80 && b <= 0x8f:
		n = uint64(b & 0x0f)
	case b >= 0x90 && b <= 0x9f:
		n = uint64(b & 0x0f)
	case b == 0xdc || b == 0xde:
		n, err = d.uintN(2)
	case b == 0xdd || b == 0xdf:
		n, err = d.uintN(4)
	default:
		return 0, fmt.Errorf("msgpack: 0x%02x is not an array or map", b)
	}
	if err != nil {
		return 0, err
	}
	// Each element takes at least one byte: a bound against huge allocations.
	if n > uint64(len(d.data)-d.pos) {
		return 0, ErrShort
	}
	return int(n), nil
}

func (d *decoder) enter() error {
	d.depth++
	if d.depth > maxDepth {
		return fmt.Errorf("msgpack: input nested deeper than %d levels", maxDepth)
	}
	return nil
}

// skip passes over one value.
func (d *decoder) skip() error {
	_, err := d.decodeRaw()
	return err
}

// decodeRaw returns the bytes of the next value.
func (d *decoder) decodeRaw() ([]byte, error) {
	start := d.pos
	k, b, err := d.peek()
	if err != nil {
		return nil, err
	}
	switch k {
	case kNil, kBool:
		d.pos++
	case kInt, kUint:
		if _, _, _, err := d.readInt(); err != nil {
			return nil, err
		}
	case kFloat:
		if _, err := d.readFloat(); err != nil {
			return nil, err
		}
	case kStr, kBin:
		if _, err := d.readBytes(); err != nil {
			return nil, err
		}
	case kArray, kMap:
		n, err := d.readLen()
		if err != nil {
			return nil, err
		}
		if k == kMap {
			n *= 2
		}
		if err := d.enter(); err != nil {
			return nil, err
		}
		for i := 0; i < n; i++ {
			if _, err := d.decodeRaw(); err != nil {
				return nil, err
			}
		}
		d.depth--
	case kExt:
		if _, _, err := d.readExt(b); err != nil {
			return nil, err
		}
	}
	return d.data[start:d.pos], nil
}

func (d *decoder) readExt(b byte) (int8, []byte, error) {
	d.pos++
	var n uint64
	var err error
	switch b {
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		n = 1 << (b - 0xd4)
	case 0xc7:
		n, err = d.uintN(1)
	case 0xc8:
		n, err = d.uintN(2)
	case 0xc9:
		n, err = d.uintN(4)
	}
	if err != nil {
		return 0, nil, err
	}
	t, err := d.byte1()
	if err != nil {
		return 0, nil, err
	}
	body, err := d.take(int(n))
	return int8(t), body, err
}

// Ext is a msgpack extension value, as decoded into `any`.
type Ext struct {
	Type int8
	Data []byte
}

func (d *decoder) decodeAny() (any, error) {
	k, b, err := d.peek()
	if err != nil {
		return nil, err
	}
	switch k {
	case kNil:
		d.pos++
		return nil, nil
	case kBool:
		d.pos++
		return b == 0xc3, nil
	case kInt, kUint:
		s, u, unsigned, err := d.readInt()
		if err != nil {
			return nil, err
		}
		if unsigned {
			if u > math.MaxInt64 {
				return u, nil
			}
			return int64(u), nil
		}
		return s, nil
	case kFloat:
		return d.readFloat()
	case kStr:
		body, err := d.readBytes()
		return string(body), err
	case kBin:
		body, err := d.readBytes()
		if err != nil {
			return nil, err
		}
		return append([]byte{}, body...), nil
	case kArray:
		n, err := d.readLen()
		if err != nil {
			return nil, err
		}
		if err := d.enter(); err != nil {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = d.decodeAny(); err != nil {
				return nil, err
			}
		}
		d.depth--
		return out, nil
	case kMap:
		return d.decodeAnyMap()
	case kExt:
		t, body, err := d.readExt(b)
		if err != nil {
			return nil, err
		}
		return Ext{Type: t, Data: append([]byte{}, body...)}, nil
	}
	return nil, fmt.Errorf("msgpack: invalid type byte 0x%02x", b)
}

func (d *decoder) decodeAnyMap() (any, error) {
	n, err := d.readLen()
	if err != nil {
		return nil, err
	}
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer func() { d.depth-- }()
	entries := make(Map, n)
	allStrings := true
	for i := range entries {
		if entries[i].Key, err = d.decodeAny(); err != nil {
			return nil, err
		}
		if entries[i].Value, err = d.decodeAny(); err != nil {
			return nil, err
		}
		if _, ok := entries[i].Key.(string); !ok {
			allStrings = false
		}
	}
	if d.ordered {
		return entries, nil
	}
	if allStrings {
		m := make(map[string]any, n)
		for _, e := range entries {
			m[e.Key.(string)] = e.Value
		}
		return m, nil
	}
	m := make(map[any]any, n)
	for _, e := range entries {
		key := e.Key
		if !reflect.TypeOf(key).Comparable() {
			// []byte keys become strings; lists and maps cannot be keys.
			if b, ok := key.([]byte); ok {
				key = string(b)
			} else {
				return nil, fmt.Errorf("msgpack: a map key of type %T cannot be a Go map key (decode into ember.Map)", key)
			}
		}
		m[key] = e.Value
	}
	return m, nil
}

var (
	unmarshalerType = reflect.TypeFor[Unmarshaler]()
	rawType         = reflect.TypeFor[RawMessage]()
	mapType         = reflect.TypeFor[Map]()
)

// decodeInto decodes the next value into v (settable).
func (d *decoder) decodeInto(v reflect.Value) error {
	t := v.Type()
	if t == rawType {
		raw, err := d.decodeRaw()
		if err != nil {
			return err
		}
		v.SetBytes(append([]byte{}, raw...))
		return nil
	}
	if t == mapType {
		saved := d.ordered
		d.ordered = true
		x, err := d.decodeAny()
		d.ordered = saved
		if err != nil {
			return err
		}
		if x == nil {
			v.Set(reflect.Zero(t))
			return nil
		}
		m, ok := x.(Map)
		if !ok {
			return &TypeError{Value: "non-map", Type: t}
		}
		v.Set(reflect.ValueOf(m))
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) && v.CanAddr() {
		raw, err := d.decodeRaw()
		if err != nil {
			return err
		}
		return v.Addr().Interface().(Unmarshaler).UnmarshalMsgpack(raw)
	}
	k, b, err := d.peek()
	if err != nil {
		return err
	}
	if k == kNil {
		d.pos++
		// nil leaves the zero value (pointers, slices and maps become nil).
		v.Set(reflect.Zero(t))
		return nil
	}
	switch t.Kind() {
	case reflect.Interface:
		if t.NumMethod() != 0 {
			if !v.IsNil() && v.Elem().Kind() == reflect.Pointer {
				return d.decodeInto(v.Elem().Elem())
			}
			return &TypeError{Value: k.String(), Type: t}
		}
		x, err := d.decodeAny()
		if err != nil {
			return err
		}
		if x == nil {
			v.Set(reflect.Zero(t))
		} else {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return d.decodeInto(v.Elem())
	case reflect.Bool:
		if k != kBool {
			return &TypeError{Value: k.String(), Type: t}
		}
		d.pos++
		v.SetBool(b == 0xc3)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if k != kInt && k != kUint {
			return &TypeError{Value: k.String(), Type: t}
		}
		s, u, unsigned, err := d.readInt()
		if err != nil {
			return err
		}
		if unsigned {
			if u > math.MaxInt64 {
				return fmt.Errorf("msgpack: integer %d overflows %s", u, t)
			}
			s = int64(u)
		}
		if v.OverflowInt(s) {
			return fmt.Errorf("msgpack: integer %d overflows %s", s, t)
		}
		v.SetInt(s)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if k != kInt && k != kUint {
			return &TypeError{Value: k.String(), Type: t}
		}
		s, u, unsigned, err := d.readInt()
		if err != nil {
			return err
		}
		if !unsigned {
			return fmt.Errorf("msgpack: negative integer %d does not fit %s", s, t)
		}
		if v.OverflowUint(u) {
			return fmt.Errorf("msgpack: integer %d overflows %s", u, t)
		}
		v.SetUint(u)
		return nil
	case reflect.Float32, reflect.Float64:
		switch k {
		case kFloat:
			f, err := d.readFloat()
			if err != nil {
				return err
			}
			v.SetFloat(f)
		case kInt, kUint:
			// An integer where a float is expected (Python's 1 for 1.0).
			s, u, unsigned, err := d.readInt()
			if err != nil {
				return err
			}
			if unsigned {
				v.SetFloat(float64(u))
			} else {
				v.SetFloat(float64(s))
			}
		default:
			return &TypeError{Value: k.String(), Type: t}
		}
		return nil
	case reflect.String:
		if k != kStr && k != kBin {
			return &TypeError{Value: k.String(), Type: t}
		}
		body, err := d.readBytes()
		if err != nil {
			return err
		}
		v.SetString(string(body))
		return nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && (k == kBin || k == kStr) {
			body, err := d.readBytes()
			if err != nil {
				return err
			}
			out := reflect.MakeSlice(t, len(body), len(body))
			reflect.Copy(out, reflect.ValueOf(body))
			v.Set(out)
			return nil
		}
		if k != kArray {
			return &TypeError{Value: k.String(), Type: t}
		}
		n, err := d.readLen()
		if err != nil {
			return err
		}
		if err := d.enter(); err != nil {
			return err
		}
		out := reflect.MakeSlice(t, n, n)
		for i := 0; i < n; i++ {
			if err := d.decodeInto(out.Index(i)); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		d.depth--
		v.Set(out)
		return nil
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && (k == kBin || k == kStr) {
			body, err := d.readBytes()
			if err != nil {
				return err
			}
			if len(body) != t.Len() {
				return fmt.Errorf("msgpack: %d bytes do not fit %s", len(body), t)
			}
			reflect.Copy(v, reflect.ValueOf(body))
			return nil
		}
		if k != kArray {
			return &TypeError{Value: k.String(), Type: t}
		}
		n, err := d.readLen()
		if err != nil {
			return err
		}
		if n != t.Len() {
			return fmt.Errorf("msgpack: an array of %d items does not fit %s", n, t)
		}
		if err := d.enter(); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := d.decodeInto(v.Index(i)); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		d.depth--
		return nil
	case reflect.Map:
		if k != kMap {
			return &TypeError{Value: k.String(), Type: t}
		}
		n, err := d.readLen()
		if err != nil {
			return err
		}
		if err := d.enter(); err != nil {
			return err
		}
		out := reflect.MakeMapWithSize(t, n)
		for i := 0; i < n; i++ {
			key := reflect.New(t.Key()).Elem()
			if err := d.decodeInto(key); err != nil {
				return fmt.Errorf("map key: %w", err)
			}
			val := reflect.New(t.Elem()).Elem()
			if err := d.decodeInto(val); err != nil {
				return fmt.Errorf("[%v]: %w", key.Interface(), err)
			}
			if key.Kind() == reflect.Interface && !key.IsNil() && !key.Elem().Type().Comparable() {
				if b, ok := key.Interface().([]byte); ok {
					key = reflect.ValueOf(string(b))
				} else {
					return fmt.Errorf("msgpack: a map key of type %s cannot be a Go map key", key.Elem().Type())
				}
			}
			out.SetMapIndex(key, val)
		}
		d.depth--
		v.Set(out)
		return nil
	case reflect.Struct:
		if k != kMap {
			return &TypeError{Value: k.String(), Type: t}
		}
		return d.decodeStruct(v)
	}
	return &TypeError{Value: k.String(), Type: t}
}

func (d *decoder) decodeStruct(v reflect.Value) error {
	info := structInfoOf(v.Type())
	n, err := d.readLen()
	if err != nil {
		return err
	}
	if err := d.enter(); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		kk, _, err := d.peek()
		if err != nil {
			return err
		}
		if kk != kStr && kk != kBin {
			// Not a field name: skip the pair.
			if err := d.skip(); err != nil {
				return err
			}
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		name, err := d.readBytes()
		if err != nil {
			return err
		}
		idx, ok := info.byName[string(name)]
		if !ok {
			idx, ok = info.byFold[foldName(string(name))]
		}
		if !ok {
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		f := info.fields[idx]
		fv := fieldForSet(v, f.index)
		if err := d.decodeInto(fv); err != nil {
			return fmt.Errorf("field %s: %w", f.name, err)
		}
	}
	d.depth--
	return nil
}

// fieldForSet follows an embedded path, allocating nil embedded pointers.
func fieldForSet(v reflect.Value, index []int) reflect.Value {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}
