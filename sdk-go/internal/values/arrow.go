package values

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ember-run/ember/sdk-go/internal/msgpack"
)

// Arrow values (format ARROW) are Arrow IPC streams: a schema message,
// then the record batches, then the end-of-stream marker, as pyarrow's
// ipc.new_stream writes them (and Python's ember.put of a pyarrow Table
// stores them).

// Allocator is the memory of the Arrow values the SDK makes (decoded
// values, Flight pulls): Go memory, reclaimed by the garbage collector
// (Release is optional).
var Allocator memory.Allocator = memory.NewGoAllocator()

var (
	recordType = reflect.TypeFor[arrow.RecordBatch]()
	tableType  = reflect.TypeFor[arrow.Table]()
	arrayType  = reflect.TypeFor[arrow.Array]()
)

func init() {
	// An Arrow value is a value of its own (format ARROW), not a part of a
	// msgpack value: refuse it instead of encoding its Go struct.
	msgpack.RefuseStruct = func(t reflect.Type) error {
		p := reflect.PointerTo(t)
		switch {
		case p.Implements(recordType) || t.Implements(recordType):
			return errors.New("an arrow.RecordBatch cannot be encoded inside a msgpack value: pass it as a value of its own (a Put, a call argument or a result), which is stored as ARROW")
		case p.Implements(tableType) || t.Implements(tableType):
			return errors.New("an arrow.Table cannot be encoded inside a msgpack value: pass it as a value of its own (a Put, a call argument or a result), which is stored as ARROW")
		case p.Implements(arrayType) || t.Implements(arrayType):
			return errors.New("an arrow.Array cannot be encoded inside a msgpack value: put it in an arrow.RecordBatch")
		}
		return nil
	}
}

// IsArrowTarget says whether out (a pointer given to Decode) asks for an
// Arrow value.
func IsArrowTarget(out any) bool {
	switch out.(type) {
	case *arrow.Table, *arrow.RecordBatch, *[]arrow.RecordBatch:
		return true
	}
	return false
}

// encodeRecords writes batches (one schema) as an IPC stream.
func encodeRecords(schema *arrow.Schema, batches []arrow.RecordBatch) ([]byte, error) {
	var size int64
	for _, b := range batches {
		if b == nil {
			return nil, errors.New("a nil arrow.RecordBatch")
		}
		size += recordSize(b)
	}
	var buf bytes.Buffer
	// The data, plus room for the messages' metadata and padding.
	buf.Grow(int(size) + 1024 + 512*len(batches))
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(Allocator))
	for i, b := range batches {
		if !b.Schema().Equal(schema) {
			w.Close()
			return nil, fmt.Errorf("arrow.RecordBatch %d has the schema %s, unlike the first one's %s", i, b.Schema(), schema)
		}
		if err := w.Write(b); err != nil {
			w.Close()
			return nil, fmt.Errorf("encode Arrow record batch %d: %w", i, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encode Arrow stream: %w", err)
	}
	return buf.Bytes(), nil
}

// recordSize estimates the bytes of b's buffers.
func recordSize(b arrow.RecordBatch) int64 {
	var n int64
	for _, col := range b.Columns() {
		n += dataSize(col.Data())
	}
	return n
}

func dataSize(d arrow.ArrayData) int64 {
	var n int64
	for _, buf := range d.Buffers() {
		if buf != nil {
			n += int64(buf.Len()) + 8
		}
	}
	for _, child := range d.Children() {
		n += dataSize(child)
	}
	if d.DataType().ID() == arrow.DICTIONARY {
		if dict := d.Dictionary(); dict != nil {
			n += dataSize(dict)
		}
	}
	return n
}

func encodeTable(t arrow.Table) ([]byte, error) {
	// One record batch per chunk (a chunk size of the table's length, so
	// the reader never splits a chunk).
	chunk := t.NumRows()
	if chunk < 1 {
		chunk = 1
	}
	r := array.NewTableReader(t, chunk)
	defer r.Release()
	var batches []arrow.RecordBatch
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	for r.Next() {
		b := r.RecordBatch()
		b.Retain()
		batches = append(batches, b)
	}
	return encodeRecords(t.Schema(), batches)
}

// decodeArrow reads an IPC stream into out (*arrow.Table,
// *arrow.RecordBatch or *[]arrow.RecordBatch). The batches' buffers are
// copied out of data (which may be shared memory) into Go memory.
func decodeArrow(data []byte, out any) error {
	schema, batches, err := readStream(data)
	if err != nil {
		return err
	}
	switch p := out.(type) {
	case *arrow.Table:
		if p == nil {
			return errors.New("ember: decode needs a non-nil pointer, got a nil *arrow.Table")
		}
		t := array.NewTableFromRecords(schema, batches)
		release(batches)
		*p = t
	case *arrow.RecordBatch:
		if p == nil {
			return errors.New("ember: decode needs a non-nil pointer, got a nil *arrow.RecordBatch")
		}
		switch len(batches) {
		case 0:
			b := array.NewRecordBuilder(Allocator, schema)
			*p = b.NewRecordBatch()
			b.Release()
		case 1:
			*p = batches[0]
		default:
			release(batches)
			return fmt.Errorf("ember: the ARROW value has %d record batches and cannot be decoded into one arrow.RecordBatch: decode it into *arrow.Table or *[]arrow.RecordBatch", len(batches))
		}
	case *[]arrow.RecordBatch:
		if p == nil {
			return errors.New("ember: decode needs a non-nil pointer, got a nil *[]arrow.RecordBatch")
		}
		if batches == nil {
			batches = []arrow.RecordBatch{}
		}
		*p = batches
	default:
		release(batches)
		return fmt.Errorf("ember: cannot decode an ARROW value into %T", out)
	}
	return nil
}

// readStream reads every record batch of an IPC stream (owned by the
// caller: one reference each).
func readStream(data []byte) (*arrow.Schema, []arrow.RecordBatch, error) {
	r, err := ipc.NewReader(bytes.NewReader(data), ipc.WithAllocator(Allocator))
	if err != nil {
		return nil, nil, fmt.Errorf("ember: the ARROW value is not an Arrow IPC stream: %w", err)
	}
	defer r.Release()
	var batches []arrow.RecordBatch
	for {
		b, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			release(batches)
			return nil, nil, fmt.Errorf("ember: read the ARROW value's record batch %d: %w", len(batches), err)
		}
		b.Retain()
		batches = append(batches, b)
	}
	return r.Schema(), batches, nil
}

func release(batches []arrow.RecordBatch) {
	for _, b := range batches {
		b.Release()
	}
}

// encodeArrow encodes an arrow.RecordBatch, a []arrow.RecordBatch or an
// arrow.Table as an IPC stream.
func encodeArrow(v any) ([]byte, error) {
	switch x := v.(type) {
	case arrow.RecordBatch:
		return encodeRecords(x.Schema(), []arrow.RecordBatch{x})
	case []arrow.RecordBatch:
		if len(x) == 0 || x[0] == nil {
			return nil, errors.New("a []arrow.RecordBatch needs at least one record batch (for its schema): send an empty one, or an arrow.Table")
		}
		return encodeRecords(x[0].Schema(), x)
	case arrow.Table:
		return encodeTable(x)
	}
	return nil, fmt.Errorf("%T is not an Arrow value", v)
}
