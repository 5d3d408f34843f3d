package msgpack

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func mustHex(t *testing.T, v any) string {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%#v): %v", v, err)
	}
	return hex.EncodeToString(b)
}

type Inner struct {
	X int `msgpack:"x"`
}

type Embedded struct {
	E string `msgpack:"e"`
}

type Tagged struct {
	Name     string            `msgpack:"name"`
	Skipped  int               `msgpack:"-"`
	Empty    string            `msgpack:"empty,omitempty"`
	Untagged bool              // its Go name
	Ptr      *Inner            `msgpack:"ptr"`
	List     []Inner           `msgpack:"list"`
	Attrs    map[string]string `msgpack:"attrs"`
	private  int
	Embedded
}

func TestStructs(t *testing.T) {
	v := Tagged{Name: "n", Skipped: 9, Untagged: true, Ptr: &Inner{X: 1}, List: []Inner{{2}},
		Attrs: map[string]string{"b": "2", "a": "1"}, private: 5, Embedded: Embedded{E: "emb"}}
	data, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic Map
	if err := Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range generic {
		keys = append(keys, e.Key.(string))
	}
	// Field order, tags, skipped and omitted fields, the embedded field flattened.
	if got := strings.Join(keys, ","); got != "name,Untagged,ptr,list,attrs,e" {
		t.Fatalf("keys = %s", got)
	}
	// Go maps are written with sorted keys.
	attrs, _ := generic.Get("attrs")
	// (Decoding into a Map keeps the order of nested maps too.)
	if !reflect.DeepEqual(attrs, Map{{"a", "1"}, {"b", "2"}}) {
		t.Fatalf("attrs = %#v", attrs)
	}
	if !bytes.Contains(data, []byte{0x82, 0xa1, 'a', 0xa1, '1', 0xa1, 'b', 0xa1, '2'}) {
		t.Fatalf("map not sorted: %x", data)
	}
	var back Tagged
	if err := Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	v.Skipped, v.private = 0, 0
	if !reflect.DeepEqual(back, v) {
		t.Fatalf("round trip = %#v, want %#v", back, v)
	}
	// Keys match case-insensitively (and without underscores) when no field
	// has the exact name; unknown keys are skipped.
	in, _ := Marshal(Map{{"NAME", "x"}, {"untagged", true}, {"unknown", []any{1, 2}}, {"E", "y"}})
	var loose Tagged
	if err := Unmarshal(in, &loose); err != nil {
		t.Fatal(err)
	}
	if loose.Name != "x" || !loose.Untagged || loose.E != "y" {
		t.Fatalf("loose = %#v", loose)
	}
}

func TestCanonicalInts(t *testing.T) {
	cases := map[string]any{
		"00": 0, "7f": int8(127), "cc80": 128, "cd0100": uint16(256), "ce00010000": int64(65536),
		"cf0000000100000000": uint64(1 << 32), "ff": -1, "e0": int16(-32), "d0df": -33,
		"d1ff7f": -129, "d2ffff7fff": -32769, "d3ffffffff7fffffff": int64(-2147483649),
	}
	for want, v := range cases {
		if got := mustHex(t, v); got != want {
			t.Errorf("Marshal(%T %v) = %s, want %s", v, v, got, want)
		}
	}
	// float32 is widened to float 64.
	if got := mustHex(t, float32(0.5)); got != "cb3fe0000000000000" {
		t.Errorf("float32 = %s", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	var i8 int8
	if err := Unmarshal([]byte{0xcc, 0xff}, &i8); err == nil || !strings.Contains(err.Error(), "overflows") {
		t.Errorf("255 into int8: %v", err)
	}
	var u uint
	if err := Unmarshal([]byte{0xff}, &u); err == nil {
		t.Error("-1 into uint: no error")
	}
	var s string
	var te *TypeError
	if err := Unmarshal([]byte{0x01}, &s); !errors.As(err, &te) {
		t.Errorf("int into string: %v", err)
	}
	var n int
	if err := Unmarshal([]byte{0xcd, 0}, &n); !errors.Is(err, ErrShort) {
		t.Errorf("truncated: %v", err)
	}
	if err := Unmarshal([]byte{0x01, 0x02}, &n); err == nil {
		t.Error("trailing bytes: no error")
	}
	if err := Unmarshal([]byte{0xc1}, &n); err == nil {
		t.Error("0xc1: no error")
	}
	// A huge declared length with no data does not allocate it.
	var list []any
	if err := Unmarshal([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, &list); !errors.Is(err, ErrShort) {
		t.Errorf("huge array: %v", err)
	}
	if err := Unmarshal([]byte{0x01}, n); err == nil {
		t.Error("non-pointer: no error")
	}
	if _, err := Marshal(make(chan int)); err == nil {
		t.Error("Marshal(chan): no error")
	}
	deep := []any{}
	for i := 0; i < maxDepth+5; i++ {
		deep = []any{deep}
	}
	if _, err := Marshal(deep); err == nil {
		t.Error("Marshal of a too deep value: no error")
	}
}

func TestDecodeConversions(t *testing.T) {
	// An int where a float is wanted (Python's 1 for 1.0).
	var f float64
	if err := Unmarshal([]byte{0x05}, &f); err != nil || f != 5 {
		t.Errorf("int into float: %v, %v", f, err)
	}
	// float 32 input.
	if err := Unmarshal([]byte{0xca, 0x3f, 0x80, 0, 0}, &f); err != nil || f != 1 {
		t.Errorf("float32 input: %v, %v", f, err)
	}
	// nil into pointers, slices and maps leaves them nil.
	p := &Inner{X: 1}
	if err := Unmarshal([]byte{0xc0}, &p); err != nil || p != nil {
		t.Errorf("nil into pointer: %v, %v", p, err)
	}
	// str into []byte and bin into string.
	var b []byte
	if err := Unmarshal([]byte{0xa2, 'h', 'i'}, &b); err != nil || string(b) != "hi" {
		t.Errorf("str into []byte: %q, %v", b, err)
	}
	var s string
	if err := Unmarshal([]byte{0xc4, 2, 'h', 'i'}, &s); err != nil || s != "hi" {
		t.Errorf("bin into string: %q, %v", s, err)
	}
	// Non-string keys decode into map[any]any.
	data, _ := Marshal(Map{{1, "one"}, {"two", 2}})
	var m any
	if err := Unmarshal(data, &m); err != nil || !reflect.DeepEqual(m, map[any]any{int64(1): "one", "two": int64(2)}) {
		t.Errorf("mixed keys = %#v, %v", m, err)
	}
	var typed map[int]string
	data, _ = Marshal(map[int]string{3: "c", 1: "a", 2: "b"})
	if hex.EncodeToString(data) != "8301a16102a16203a163" {
		t.Errorf("int keys not sorted: %x", data)
	}
	if err := Unmarshal(data, &typed); err != nil || typed[2] != "b" {
		t.Errorf("map[int]string = %v, %v", typed, err)
	}
	// Big unsigned into any is uint64; others int64.
	var x any
	if err := Unmarshal([]byte{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, &x); err != nil || x != uint64(math.MaxUint64) {
		t.Errorf("max uint64 = %#v, %v", x, err)
	}
	// Ext values come back as Ext.
	if err := Unmarshal([]byte{0xd4, 0x05, 0x2a}, &x); err != nil || !reflect.DeepEqual(x, Ext{Type: 5, Data: []byte{0x2a}}) {
		t.Errorf("ext = %#v, %v", x, err)
	}
}

type custom struct{ v int }

func (c custom) MarshalMsgpack() ([]byte, error) { return Marshal([]int{c.v, c.v}) }

func (c *custom) UnmarshalMsgpack(b []byte) error {
	var pair []int
	if err := Unmarshal(b, &pair); err != nil {
		return err
	}
	c.v = pair[0] + pair[1]
	return nil
}

func TestMarshalerAndRaw(t *testing.T) {
	if got := mustHex(t, custom{3}); got != "920303" {
		t.Fatalf("Marshaler = %s", got)
	}
	// A Map inside a struct or a slice keeps its order and form.
	if got := mustHex(t, []Map{{{"b", 1}, {"a", 2}}}); got != "9182a16201a16102" {
		t.Fatalf("Marshaler = %s", got)
	}
	var c custom
	if err := Unmarshal([]byte{0x92, 0x01, 0x02}, &c); err != nil || c.v != 3 {
		t.Fatalf("Unmarshaler = %v, %v", c, err)
	}
	type holder struct {
		Raw RawMessage `msgpack:"raw"`
		N   int        `msgpack:"n"`
	}
	data, _ := Marshal(holder{Raw: RawMessage{0x93, 1, 2, 3}, N: 7})
	var h holder
	if err := Unmarshal(data, &h); err != nil || !bytes.Equal(h.Raw, []byte{0x93, 1, 2, 3}) || h.N != 7 {
		t.Fatalf("RawMessage = %#v, %v", h, err)
	}
}
