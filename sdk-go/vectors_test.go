package ember

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The shared msgpack vectors (tests/vectors/msgpack.json, made by
// make_msgpack_vectors.py): every SDK encodes each value to exactly these
// bytes and decodes them back to the value.
type vectorFile struct {
	Format  string   `json:"format"`
	Vectors []vector `json:"vectors"`
}

type vector struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
	Hex   string          `json:"hex"`
}

type valueDesc struct {
	Type    string              `json:"type"`
	Value   json.RawMessage     `json:"value"`
	Hex     string              `json:"hex"`
	Items   []json.RawMessage   `json:"items"`
	Entries [][]json.RawMessage `json:"entries"`
}

// build makes the Go value a description stands for: ordered (maps as
// Map, for encoding in the given order) or plain (maps as map[string]any,
// as Unmarshal into `any` returns them).
func build(t *testing.T, raw json.RawMessage, ordered bool) any {
	t.Helper()
	var d valueDesc
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("bad description %s: %v", raw, err)
	}
	switch d.Type {
	case "nil":
		return nil
	case "bool":
		var b bool
		mustJSON(t, d.Value, &b)
		return b
	case "int":
		n, ok := new(big.Int).SetString(string(d.Value), 10)
		if !ok {
			t.Fatalf("bad int %s", d.Value)
		}
		if n.IsInt64() {
			return n.Int64()
		}
		if n.IsUint64() {
			return n.Uint64()
		}
		t.Fatalf("int %s is out of the 64-bit range", n)
	case "float":
		var f float64
		mustJSON(t, d.Value, &f)
		return f
	case "str":
		var s string
		mustJSON(t, d.Value, &s)
		return s
	case "bytes":
		b, err := hex.DecodeString(d.Hex)
		if err != nil {
			t.Fatal(err)
		}
		return b
	case "list":
		items := make([]any, len(d.Items))
		for i, item := range d.Items {
			items[i] = build(t, item, ordered)
		}
		return items
	case "map":
		if ordered {
			m := make(Map, len(d.Entries))
			for i, e := range d.Entries {
				m[i] = MapEntry{Key: build(t, e[0], ordered), Value: build(t, e[1], ordered)}
			}
			return m
		}
		m := make(map[string]any, len(d.Entries))
		for _, e := range d.Entries {
			key, ok := build(t, e[0], false).(string)
			if !ok {
				t.Fatalf("map key %s is not a string", e[0])
			}
			m[key] = build(t, e[1], false)
		}
		return m
	}
	t.Fatalf("unknown value type %q", d.Type)
	return nil
}

func mustJSON(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	path := filepath.Join("..", "tests", "vectors", "msgpack.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the shared vectors: %v", err)
	}
	var f vectorFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if f.Format != "msgpack" || len(f.Vectors) < 20 {
		t.Fatalf("unexpected vector file: format %q, %d vectors", f.Format, len(f.Vectors))
	}
	return f.Vectors
}

func TestMsgpackVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			want, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			ordered := build(t, v.Value, true)
			got, err := Marshal(ordered)
			if err != nil {
				t.Fatalf("Marshal(%#v): %v", ordered, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Marshal(%#v)\n got %x\nwant %x", ordered, got, want)
			}
			// Decoded in order, the value is the description's.
			var back any
			if err := UnmarshalOrdered(want, &back); err != nil {
				t.Fatalf("UnmarshalOrdered(%s): %v", v.Hex, err)
			}
			if !equalValues(back, ordered) {
				t.Fatalf("UnmarshalOrdered(%s) = %#v, want %#v", v.Hex, back, ordered)
			}
			// Decoded plainly, maps are map[string]any.
			plain := build(t, v.Value, false)
			var back2 any
			if err := Unmarshal(want, &back2); err != nil {
				t.Fatalf("Unmarshal(%s): %v", v.Hex, err)
			}
			if !equalValues(back2, plain) {
				t.Fatalf("Unmarshal(%s) = %#v, want %#v", v.Hex, back2, plain)
			}
			// And it encodes to the same bytes again (Go maps sort their
			// keys: equal to the vectors whose keys are in sorted order).
			again, err := Marshal(back)
			if err != nil || !bytes.Equal(again, want) {
				t.Fatalf("re-encoding the decoded value: %x, %v", again, err)
			}
		})
	}
}

// equalValues is reflect.DeepEqual, except that NaN equals NaN.
func equalValues(a, b any) bool {
	if fa, ok := a.(float64); ok {
		if fb, ok := b.(float64); ok {
			return fa == fb || (math.IsNaN(fa) && math.IsNaN(fb))
		}
	}
	return reflect.DeepEqual(a, b)
}

// The vectors as typed Go values: the same bytes from ints of any width,
// structs with tags, and fixed-size types.
func TestMsgpackTypedValues(t *testing.T) {
	type Meta struct {
		Step int64  `msgpack:"step"`
		Blob []byte `msgpack:"blob"`
	}
	type Policy struct {
		Name    string    `msgpack:"name"`
		Weights []float64 `msgpack:"weights"`
		Meta    Meta      `msgpack:"meta"`
	}
	byName := map[string]string{}
	for _, v := range loadVectors(t) {
		byName[v.Name] = v.Hex
	}
	cases := []struct {
		vector string
		value  any
		into   func() any
	}{
		{"int uint8", uint8(128), func() any { return new(uint8) }},
		{"int uint16", uint16(65535), func() any { return new(uint16) }},
		{"int uint32", uint32(4294967295), func() any { return new(uint32) }},
		{"int uint64", uint64(math.MaxUint64), func() any { return new(uint64) }},
		{"int int8", int8(-33), func() any { return new(int8) }},
		{"int int16", int16(-32768), func() any { return new(int16) }},
		{"int int32", int32(-2147483648), func() any { return new(int32) }},
		{"int int64", int64(math.MinInt64), func() any { return new(int64) }},
		{"int positive fixint", 127, func() any { return new(int) }},
		{"float", 1.5, func() any { return new(float64) }},
		{"float whole", float32(3), func() any { return new(float32) }},
		{"str utf-8", "héllo wörld ✓", func() any { return new(string) }},
		{"bytes", []byte{0, 0xff, 0x10}, func() any { return new([]byte) }},
		{"bytes", [3]byte{0, 0xff, 0x10}, func() any { return new([3]byte) }},
		{"list 20 ints (array16)", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, func() any { return new([]int) }},
		{"map str keys", map[string]any{"b": true, "a": 1}, func() any { return new(map[string]any) }},
		{"map nested", Policy{Name: "policy", Weights: []float64{0.25, -1}, Meta: Meta{Step: 42, Blob: []byte{1, 2}}}, func() any { return new(Policy) }},
		{"nil", (*Policy)(nil), func() any { return new(*Policy) }},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s %T", c.vector, c.value), func(t *testing.T) {
			want := byName[c.vector]
			if want == "" {
				t.Fatalf("no vector %q", c.vector)
			}
			got, err := Marshal(c.value)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != want {
				t.Fatalf("Marshal(%#v) = %x, want %s", c.value, got, want)
			}
			out := c.into()
			if err := Unmarshal(got, out); err != nil {
				t.Fatal(err)
			}
			if back := reflect.ValueOf(out).Elem().Interface(); !reflect.DeepEqual(back, c.value) {
				if m, ok := back.(map[string]any); ok {
					// Decoded ints are int64.
					if m["a"] == int64(1) && m["b"] == true && len(m) == 2 {
						return
					}
				}
				t.Fatalf("Unmarshal = %#v, want %#v", back, c.value)
			}
		})
	}
}
