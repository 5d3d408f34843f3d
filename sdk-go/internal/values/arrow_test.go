package values

import (
	"bytes"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ember-run/ember/sdk-go/internal/msgpack"
	"github.com/ember-run/ember/sdk-go/internal/pb"
)

var testSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// batch makes rows [from, from+n) of testSchema (every 7th label null).
func batch(from, n int) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.NewGoAllocator(), testSchema)
	defer b.Release()
	for i := from; i < from+n; i++ {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		b.Field(1).(*array.Float64Builder).Append(float64(i) / 4)
		if i%7 == 3 {
			b.Field(2).(*array.StringBuilder).AppendNull()
		} else {
			b.Field(2).(*array.StringBuilder).Append("row-" + strings.Repeat("x", i%5))
		}
	}
	return b.NewRecordBatch()
}

func roundTrip(t *testing.T, v any, out any) []byte {
	t.Helper()
	format, data, err := Encode(v)
	if err != nil {
		t.Fatalf("Encode(%T): %v", v, err)
	}
	if format != pb.ValueFormat_ARROW {
		t.Fatalf("Encode(%T) format %v, want ARROW", v, format)
	}
	// Decoding must not keep the input bytes: scribble over them after.
	shm := append([]byte{}, data...)
	if err := Decode(format, shm, out); err != nil {
		t.Fatalf("Decode into %T: %v", out, err)
	}
	for i := range shm {
		shm[i] = 0xee
	}
	return data
}

func TestArrowRoundTrips(t *testing.T) {
	one := batch(0, 100)
	parts := []arrow.RecordBatch{batch(0, 40), batch(40, 0), batch(40, 60)}
	table := array.NewTableFromRecords(testSchema, parts)
	want := array.NewTableFromRecords(testSchema, []arrow.RecordBatch{one})

	// A record batch, into each target.
	var rec arrow.RecordBatch
	data := roundTrip(t, one, &rec)
	if !array.RecordEqual(rec, one) {
		t.Fatalf("record round trip: %v", rec)
	}
	// The bytes are an IPC stream any Arrow reader reads.
	r, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil || !r.Next() || !array.RecordEqual(r.RecordBatch(), one) || r.Next() {
		t.Fatalf("the ARROW bytes are not one IPC stream batch: %v", err)
	}
	r.Release()
	var tbl arrow.Table
	roundTrip(t, one, &tbl)
	if !array.TableEqual(tbl, want) {
		t.Fatalf("record into table: %v", tbl)
	}

	// Several batches, and a table of several chunks.
	var recs []arrow.RecordBatch
	roundTrip(t, parts, &recs)
	if len(recs) != 3 || recs[1].NumRows() != 0 {
		t.Fatalf("[]RecordBatch round trip: %d batches", len(recs))
	}
	for i := range recs {
		if !array.RecordEqual(recs[i], parts[i]) {
			t.Fatalf("batch %d differs", i)
		}
	}
	roundTrip(t, table, &tbl)
	if !array.TableEqual(tbl, want) || tbl.NumRows() != 100 {
		t.Fatalf("table round trip: %v", tbl)
	}
	// A batch per chunk (the empty chunk may be left out).
	roundTrip(t, table, &recs)
	if len(recs) < 2 || recs[0].NumRows() != 40 || recs[len(recs)-1].NumRows() != 60 {
		t.Fatalf("a table of chunks 40, 0, 60 as %d batches", len(recs))
	}
	// Several batches do not fit one RecordBatch: the error names them.
	_, data, _ = Encode(parts)
	err = Decode(pb.ValueFormat_ARROW, data, &rec)
	if err == nil || !strings.Contains(err.Error(), "3 record batches") || !strings.Contains(err.Error(), "*arrow.Table") {
		t.Fatalf("3 batches into one RecordBatch: %v", err)
	}

	// A slice of a batch (offsets into its buffers).
	slice := one.NewSlice(13, 57)
	roundTrip(t, slice, &rec)
	if !array.RecordEqual(rec, slice) || rec.NumRows() != 44 {
		t.Fatalf("sliced record round trip: %v", rec)
	}

	// An empty table: no batches; into a RecordBatch, an empty one.
	empty := array.NewTableFromRecords(testSchema, nil)
	roundTrip(t, empty, &recs)
	if len(recs) != 0 {
		t.Fatalf("empty table: %d batches", len(recs))
	}
	roundTrip(t, empty, &rec)
	if rec.NumRows() != 0 || !rec.Schema().Equal(testSchema) {
		t.Fatalf("empty table into a RecordBatch: %v", rec)
	}

	// ARROW into bytes: the IPC stream as it is.
	var raw Raw
	if err := Decode(pb.ValueFormat_ARROW, data, &raw); err != nil || !bytes.Equal(raw, data) {
		t.Fatalf("ARROW into Raw: %v", err)
	}
	var b []byte
	if err := Decode(pb.ValueFormat_ARROW, data, &b); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("ARROW into []byte: %v", err)
	}
}

func TestArrowErrors(t *testing.T) {
	one := batch(0, 3)
	_, data, err := Encode(one)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = Decode(pb.ValueFormat_ARROW, data, &n)
	if err == nil || !strings.Contains(err.Error(), "ARROW") || !strings.Contains(err.Error(), "into int") || !strings.Contains(err.Error(), "*arrow.Table") {
		t.Fatalf("ARROW into int: %v", err)
	}
	packed, _ := msgpack.Marshal(map[string]int{"a": 1})
	var tbl arrow.Table
	for _, out := range []any{&tbl, new(arrow.RecordBatch), new([]arrow.RecordBatch)} {
		err = Decode(pb.ValueFormat_MSGPACK, packed, out)
		if err == nil || !strings.Contains(err.Error(), "msgpack, not Arrow") {
			t.Fatalf("msgpack into %T: %v", out, err)
		}
	}
	nilPacked, _ := msgpack.Marshal(nil)
	if err := Decode(pb.ValueFormat_MSGPACK, nilPacked, &tbl); err == nil {
		t.Fatal("msgpack nil into *arrow.Table did not fail")
	}
	if err := Decode(pb.ValueFormat_RAW, data, &tbl); err == nil || !strings.Contains(err.Error(), "RAW") {
		t.Fatalf("RAW into *arrow.Table: %v", err)
	}
	if err := Decode(pb.ValueFormat_ARROW, []byte("not arrow"), &tbl); err == nil || !strings.Contains(err.Error(), "not an Arrow IPC stream") {
		t.Fatalf("bad bytes: %v", err)
	}
	if _, _, err := Encode([]arrow.RecordBatch{}); err == nil {
		t.Fatal("an empty []arrow.RecordBatch encoded")
	}
	other := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}}, nil),
		[]arrow.Array{one.Column(0)}, 3)
	if _, _, err := Encode([]arrow.RecordBatch{one, other}); err == nil || !strings.Contains(err.Error(), "schema") {
		t.Fatalf("batches of two schemas: %v", err)
	}
	// Inside a msgpack value: refused, not encoded as an empty map.
	for _, v := range []any{
		map[string]any{"t": one},
		[]any{array.NewTableFromRecords(testSchema, []arrow.RecordBatch{one})},
		struct{ Col arrow.Array }{one.Column(0)},
	} {
		if _, _, err := Encode(v); err == nil || !strings.Contains(err.Error(), "cannot be encoded inside a msgpack value") {
			t.Fatalf("Encode(%T with Arrow inside): %v", v, err)
		}
	}
	// Ordinary values still go as msgpack.
	if f, _, err := Encode(map[string]any{"a": []int{1}}); err != nil || f != pb.ValueFormat_MSGPACK {
		t.Fatalf("msgpack value: %v %v", f, err)
	}
}
