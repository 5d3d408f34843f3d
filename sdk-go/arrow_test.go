package ember

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ember-run/ember/sdk-go/internal/testnode"
)

// Arrow values (format ARROW, an Arrow IPC stream) against the real node:
// put and get, Go functions taking and returning record batches, Arrow
// Flight pulls, and Python reading and making them.

var arrowSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "flag", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
}, nil)

// arrowRows makes rows [from, from+n) of arrowSchema: id i, score i/2,
// label "row-i" (null when i%11 == 5), flag i%3 == 0 (null when i%7 == 0).
// Python's gotest.arrow_make makes the same rows.
func arrowRows(from, n int) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.NewGoAllocator(), arrowSchema)
	defer b.Release()
	ids := b.Field(0).(*array.Int64Builder)
	scores := b.Field(1).(*array.Float64Builder)
	labels := b.Field(2).(*array.StringBuilder)
	flags := b.Field(3).(*array.BooleanBuilder)
	ids.Reserve(n)
	scores.Reserve(n)
	labels.Reserve(n)
	flags.Reserve(n)
	for i := from; i < from+n; i++ {
		ids.Append(int64(i))
		scores.Append(float64(i) / 2)
		if i%11 == 5 {
			labels.AppendNull()
		} else {
			labels.Append(fmt.Sprintf("row-%d", i))
		}
		if i%7 == 0 {
			flags.AppendNull()
		} else {
			flags.Append(i%3 == 0)
		}
	}
	return b.NewRecordBatch()
}

// arrowTable is rows [0, n) in chunks of at most chunk rows.
func arrowTable(n, chunk int) arrow.Table {
	var batches []arrow.RecordBatch
	for from := 0; from < n; from += chunk {
		batches = append(batches, arrowRows(from, min(chunk, n-from)))
	}
	return array.NewTableFromRecords(arrowSchema, batches)
}

// checkRows checks that t holds exactly arrowRows(0, n), value by value.
func checkRows(t *testing.T, what string, tbl arrow.Table, n int) {
	t.Helper()
	if tbl.NumRows() != int64(n) || !tbl.Schema().Equal(arrowSchema) {
		t.Fatalf("%s: %d rows, schema %s; want %d rows of %s", what, tbl.NumRows(), tbl.Schema(), n, arrowSchema)
	}
	want := arrowTable(n, max(n, 1))
	if !array.TableEqual(tbl, want) {
		t.Fatalf("%s: the values differ from the rows put", what)
	}
	// And by hand, for a few columns: TableEqual is not the only judge.
	row := 0
	for _, chunk := range tbl.Column(0).Data().Chunks() {
		ids := chunk.(*array.Int64)
		for i := range ids.Len() {
			if ids.Value(i) != int64(row) {
				t.Fatalf("%s: id[%d] = %d", what, row, ids.Value(i))
			}
			row++
		}
	}
	row = 0
	for _, chunk := range tbl.Column(2).Data().Chunks() {
		labels := chunk.(*array.String)
		for i := range labels.Len() {
			if (row%11 == 5) != labels.IsNull(i) || (!labels.IsNull(i) && labels.Value(i) != fmt.Sprintf("row-%d", row)) {
				t.Fatalf("%s: label[%d] = %q (null %v)", what, row, labels.Value(i), labels.IsNull(i))
			}
			row++
		}
	}
}

func ipcBytes(t *testing.T, batches ...arrow.RecordBatch) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(batches[0].Schema()))
	for _, b := range batches {
		if err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func init() {
	// Multiplies the int64 column "x" (or "id") by k; the other columns
	// as they are.
	Register("test.arrow_scale", func(rec arrow.RecordBatch, k int64) (arrow.RecordBatch, error) {
		col := -1
		for i, f := range rec.Schema().Fields() {
			if (f.Name == "x" || f.Name == "id") && f.Type.ID() == arrow.INT64 {
				col = i
			}
		}
		if col < 0 {
			return nil, fmt.Errorf("no int64 column x or id in %s", rec.Schema())
		}
		in := rec.Column(col).(*array.Int64)
		b := array.NewInt64Builder(memory.NewGoAllocator())
		defer b.Release()
		for i := range in.Len() {
			if in.IsNull(i) {
				b.AppendNull()
			} else {
				b.Append(in.Value(i) * k)
			}
		}
		scaled := b.NewArray()
		defer scaled.Release()
		return rec.SetColumn(col, scaled)
	})
	// The rows of each batch.
	Register("test.arrow_batches", func(batches []arrow.RecordBatch) []int64 {
		out := make([]int64, len(batches))
		for i, b := range batches {
			out[i] = b.NumRows()
		}
		return out
	})
	// A table and an int: the rows, the sum of "id" and n.
	Register("test.arrow_describe", func(ctx context.Context, tbl arrow.Table, n int) (map[string]any, error) {
		var sum int64
		idx := tbl.Schema().FieldIndices("id")
		if len(idx) != 1 {
			return nil, errors.New("no id column")
		}
		for _, chunk := range tbl.Column(idx[0]).Data().Chunks() {
			for _, v := range chunk.(*array.Int64).Int64Values() {
				sum += v
			}
		}
		return map[string]any{"rows": tbl.NumRows(), "id_sum": sum, "n": n, "columns": tbl.Schema().NumFields()}, nil
	})
	// arrowRows(0, n) as a table (large n: a result in shared memory).
	Register("test.arrow_make", func(n int) arrow.Table { return arrowTable(n, 1<<16) })
}

func TestArrowPutGet(t *testing.T) {
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)

	// A small record batch: inline.
	small := arrowRows(0, 100)
	ref, err := c.Put(ctx, small)
	if err != nil {
		t.Fatal(err)
	}
	var tbl arrow.Table
	if err := ref.Get(ctx, &tbl); err != nil {
		t.Fatal(err)
	}
	checkRows(t, "a put record batch into arrow.Table", tbl, 100)
	var rec arrow.RecordBatch
	if err := ref.Get(ctx, &rec); err != nil || !array.RecordEqual(rec, small) {
		t.Fatalf("into arrow.RecordBatch: %v", err)
	}
	var recs []arrow.RecordBatch
	if err := ref.Get(ctx, &recs); err != nil || len(recs) != 1 || !array.RecordEqual(recs[0], small) {
		t.Fatalf("into []arrow.RecordBatch: %d, %v", len(recs), err)
	}
	// Into bytes: the IPC stream, as before.
	var raw Raw
	if err := ref.Get(ctx, &raw); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, ipcBytes(t, small)) {
		t.Fatalf("the ARROW bytes (%d) are not the IPC stream of the batch", len(raw))
	}
	var blob []byte
	if err := ref.Get(ctx, &blob); err != nil || !bytes.Equal(blob, raw) {
		t.Fatalf("into []byte: %v", err)
	}

	// Errors: ARROW into an int; msgpack into arrow types.
	var n int
	err = ref.Get(ctx, &n)
	if err == nil || !strings.Contains(err.Error(), "ARROW") || !strings.Contains(err.Error(), "into int") {
		t.Fatalf("Get of an ARROW value into an int: %v", err)
	}
	mp, err := c.Put(ctx, map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	err = mp.Get(ctx, &tbl)
	if err == nil || !strings.Contains(err.Error(), "msgpack, not Arrow") || !strings.Contains(err.Error(), "arrow.Table") {
		t.Fatalf("Get of a msgpack value into *arrow.Table: %v", err)
	}
	if err := mp.Get(ctx, &rec); err == nil || !strings.Contains(err.Error(), "msgpack, not Arrow") {
		t.Fatalf("Get of a msgpack value into *arrow.RecordBatch: %v", err)
	}
	// Several batches do not fit one RecordBatch.
	three, err := c.Put(ctx, []arrow.RecordBatch{arrowRows(0, 10), arrowRows(10, 10), arrowRows(20, 10)})
	if err != nil {
		t.Fatal(err)
	}
	if err := three.Get(ctx, &rec); err == nil || !strings.Contains(err.Error(), "3 record batches") {
		t.Fatalf("3 batches into one arrow.RecordBatch: %v", err)
	}
	if err := three.Get(ctx, &tbl); err != nil {
		t.Fatal(err)
	}
	checkRows(t, "three put batches", tbl, 30)
	// Arrow inside a msgpack value is refused.
	if _, err := c.Put(ctx, map[string]any{"t": small}); err == nil || !strings.Contains(err.Error(), "inside a msgpack value") {
		t.Fatalf("a record batch inside a map: %v", err)
	}

	// A large table (about 8 MB): through shared memory, copied out.
	big := arrowTable(200_000, 30_000)
	before := c.rt.Stats()
	ref, err = c.Put(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(ctx, &tbl); err != nil {
		t.Fatal(err)
	}
	if after := c.rt.Stats(); after.ShmPuts != before.ShmPuts+1 || after.ShmGets != before.ShmGets+1 {
		t.Fatalf("the large table did not go through shared memory: %+v -> %+v", before, after)
	}
	// The object freed and its memory written over by other objects: the
	// table read from it must not change.
	ref.Release()
	var fill []ObjectRef
	for i := range 8 {
		junk := bytes.Repeat([]byte{byte(0xa0 + i)}, 8<<20)
		r, err := c.Put(ctx, junk)
		if err != nil {
			t.Fatal(err)
		}
		fill = append(fill, r)
	}
	runtime.GC()
	checkRows(t, "a large table read through shared memory, after its object was freed", tbl, 200_000)
	for _, r := range fill {
		r.Release()
	}
}

func TestArrowGoFunction(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	scale := Function{Language: Go, Name: "test.arrow_scale"}

	// Go → Go: a record batch argument and result (inline).
	ref, err := c.Call(ctx, scale, arrowRows(0, 50), 3)
	if err != nil {
		t.Fatal(err)
	}
	var rec arrow.RecordBatch
	if err := ref.Get(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	ids := rec.Column(0).(*array.Int64)
	if rec.NumRows() != 50 || ids.Value(49) != 147 || rec.Column(2).(*array.String).Value(1) != "row-1" {
		t.Fatalf("test.arrow_scale = %v", rec)
	}
	// Large: the argument and the result go through shared memory.
	bigRows := 300_000
	workerBefore := mainWorker.client.rt.Stats()
	ref, err = c.Call(ctx, scale, arrowRows(0, bigRows), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	if mainWorker.client.rt.Stats().ShmReturn != workerBefore.ShmReturn+1 {
		t.Fatalf("the large result did not go through shared memory")
	}
	ids = rec.Column(0).(*array.Int64)
	for i := range bigRows {
		if ids.Value(i) != int64(2*i) {
			t.Fatalf("large test.arrow_scale: id[%d] = %d", i, ids.Value(i))
		}
	}
	// A put table passed by reference, into an arrow.Table parameter.
	put, err := c.Put(ctx, arrowTable(1000, 300))
	if err != nil {
		t.Fatal(err)
	}
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.arrow_describe"}, put, 7)
	if err != nil {
		t.Fatal(err)
	}
	var desc struct {
		Rows    int64 `msgpack:"rows"`
		IDSum   int64 `msgpack:"id_sum"`
		N       int   `msgpack:"n"`
		Columns int   `msgpack:"columns"`
	}
	if err := ref.Get(ctx, &desc); err != nil || desc.Rows != 1000 || desc.IDSum != 999*1000/2 || desc.N != 7 || desc.Columns != 4 {
		t.Fatalf("test.arrow_describe = %+v, %v", desc, err)
	}
	// Batches into a []arrow.RecordBatch parameter.
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.arrow_batches"}, []arrow.RecordBatch{arrowRows(0, 3), arrowRows(3, 5)})
	if err != nil {
		t.Fatal(err)
	}
	var rows []int64
	if err := ref.Get(ctx, &rows); err != nil || fmt.Sprint(rows) != "[3 5]" {
		t.Fatalf("test.arrow_batches = %v, %v", rows, err)
	}
	// A result table made by the worker, read as a table.
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.arrow_make"}, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	var tbl arrow.Table
	if err := ref.Get(ctx, &tbl); err != nil {
		t.Fatal(err)
	}
	checkRows(t, "test.arrow_make(100000)", tbl, 100_000)

	// A msgpack argument for an Arrow parameter: an ArgumentError.
	err = callGet(ctx, c, scale, 5, 2)
	var te *TaskError
	if !errors.As(err, &te) || te.TypeName != "ember.ArgumentError" || !strings.Contains(te.Message, "msgpack, not Arrow") {
		t.Fatalf("test.arrow_scale(5, 2): %v", err)
	}
	// An Arrow argument for an int parameter too.
	err = callGet(ctx, c, Function{Language: Go, Name: "test.add"}, arrowRows(0, 1), 2)
	if !errors.As(err, &te) || te.TypeName != "ember.ArgumentError" || !strings.Contains(te.Message, "ARROW") {
		t.Fatalf("test.add(record, 2): %v", err)
	}
}

func callGet(ctx context.Context, c *Client, fn Function, args ...any) error {
	ref, err := c.Call(ctx, fn, args...)
	if err != nil {
		return err
	}
	return ref.Get(ctx, nil)
}

func TestArrowFlight(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 180*time.Second)

	// A table of more than 50 MB, put through shared memory, pulled back
	// over Arrow Flight.
	const rows = 1_700_000
	big := arrowTable(rows, 250_000)
	ref, err := c.Put(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	var raw Raw
	if err := ref.Get(ctx, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) < 50_000_000 {
		t.Fatalf("the table is %d bytes, want at least 50 MB", len(raw))
	}
	start := time.Now()
	pulled, err := ref.FlightTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pulled %d rows (%.1f MB) over Arrow Flight in %v", pulled.NumRows(), float64(len(raw))/1e6, time.Since(start))
	checkRows(t, "a 50 MB table pulled over Arrow Flight", pulled, rows)

	// Streamed, batch by batch.
	rd, err := ref.FlightRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n, sum int64
	for rd.Next() {
		b := rd.RecordBatch()
		n += b.NumRows()
		for _, v := range b.Column(0).(*array.Int64).Int64Values() {
			sum += v
		}
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	rd.Release()
	if n != rows || sum != int64(rows)*(rows-1)/2 {
		t.Fatalf("FlightRecords: %d rows, id sum %d", n, sum)
	}
	// A reader released before the end ends its stream.
	rd, err = ref.FlightRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rd.Next() {
		t.Fatalf("no first batch: %v", rd.Err())
	}
	rd.Release()

	// A small (inline) put, and a Go function's result.
	small, err := c.Put(ctx, arrowRows(0, 10))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := small.FlightTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, "a small put pulled over Flight", tbl, 10)
	// Pulled at once after the put: the pull waits until the node has the
	// put (its PutObject is sent in the background).
	for i := range 50 {
		r, err := c.Put(ctx, arrowRows(i, 3))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.FlightTable(ctx); err != nil {
			t.Fatalf("a pull right after the put (%d): %v", i, err)
		}
		r.Release()
	}
	made, err := c.Call(ctx, Function{Language: Go, Name: "test.arrow_make"}, 500_000)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err = made.FlightTable(ctx) // waits for the result
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, "test.arrow_make(500000) over Flight", tbl, 500_000)

	// A remote client (gRPC, no shared memory) reads a large result over
	// Flight.
	remote, err := Connect(ctx, Options{SessionRoot: node.Root, Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	if remote.rt.Local() {
		t.Fatal("the remote client has shared memory")
	}
	made, err = remote.Call(ctx, Function{Language: Go, Name: "test.arrow_make"}, 700_000)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err = made.FlightTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, "a remote client's Flight pull", tbl, 700_000)

	// Errors: not Arrow, a failed task, a released ref.
	mp, err := c.Put(ctx, "not a table")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mp.FlightRecords(ctx); err == nil || !strings.Contains(err.Error(), "not Arrow") {
		t.Fatalf("FlightRecords of a msgpack value: %v", err)
	}
	failed, err := c.Call(ctx, Function{Language: Go, Name: "test.fail"}, "no table")
	if err != nil {
		t.Fatal(err)
	}
	var te *TaskError
	if _, err := failed.FlightTable(ctx); !errors.As(err, &te) || !strings.Contains(te.Message, "no table") {
		t.Fatalf("FlightTable of a failed task: %v", err)
	}
	small.Release()
	if _, err := small.FlightTable(ctx); !errors.Is(err, ErrReleased) {
		t.Fatalf("FlightTable of a released ref: %v", err)
	}
	// A wrong token: the node's Flight service refuses it.
	wrong := newClient(t)
	mine, err := wrong.Put(ctx, arrowRows(0, 5))
	if err != nil {
		t.Fatal(err)
	}
	wrong.node.token = "not-the-token"
	if _, err := mine.FlightTable(ctx); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("FlightTable with a wrong token: %v", err)
	}
	// A closed client.
	closing := newClient(t)
	late, err := closing.Put(ctx, arrowRows(0, 5))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.FlightTable(ctx); err != nil {
		t.Fatal(err)
	}
	closing.Close()
	if _, err := late.FlightTable(ctx); err == nil {
		t.Fatal("FlightTable through a closed client worked")
	}
}

// The Python side of TestArrowPython: it exports three functions that
// read, make and return pyarrow Tables, calls the Go function
// test.arrow_scale with a pyarrow Table, prints what it got as one JSON
// line, says READY and stays connected until stdin closes.
const arrowPythonScript = `
import json, sys
import pyarrow as pa
import ember
from ember import cross_language

ember.init(address=sys.argv[1])

def describe(table):
    return {
        "type": type(table).__module__ + "." + type(table).__name__,
        "rows": table.num_rows,
        "schema": [[f.name, str(f.type)] for f in table.schema],
        "data": table.to_pydict(),
    }

def make(n):
    import pyarrow as pa
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "score": pa.array([i / 2 for i in range(n)], pa.float64()),
        "label": pa.array([None if i % 11 == 5 else "row-%d" % i for i in range(n)], pa.string()),
        "flag": pa.array([None if i % 7 == 0 else i % 3 == 0 for i in range(n)], pa.bool_()),
    })

def echo(table):
    return table

cross_language.export(describe, "gotest.arrow_describe")
cross_language.export(make, "gotest.arrow_make")
cross_language.export(echo, "gotest.arrow_echo")

t = pa.table({"x": pa.array([1, 2, None], pa.int64()), "name": ["a", "b", "c"]})
scaled = ember.get(cross_language.go_function("test.arrow_scale").remote(t, 10), timeout=60)
out = {"type": type(scaled).__module__ + "." + type(scaled).__name__, "scaled": scaled.to_pydict(),
       "schema": [[f.name, str(f.type)] for f in scaled.schema]}
ember.nodes()
print(json.dumps(out), flush=True)
print("READY", flush=True)
sys.stdin.read()
`

// runPython runs script with the node's address as its argument and
// returns the lines it printed before READY.
func runPython(t *testing.T, script string) []string {
	t.Helper()
	python := testnode.Python()
	if python == "" {
		t.Fatal("no Python with the ember SDK: run `make venv` (or set EMBER_PYTHON, or EMBER_GO_TEST_NO_PYTHON=1 to skip)")
	}
	cmd := exec.Command(python, "-c", script, node.Info.Address)
	cmd.Env = append(os.Environ(), "EMBER_TMPDIR="+node.Root)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- strings.TrimSpace(line)
		}
	}()
	var got []string
	timeout := time.After(120 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the Python script ended early; output: %q", got)
			}
			if line == "READY" {
				return got
			}
			got = append(got, line)
		case <-timeout:
			t.Fatalf("the Python script did not finish within 120 s; output: %q", got)
		}
	}
}

func TestArrowPython(t *testing.T) {
	if os.Getenv("EMBER_GO_TEST_NO_PYTHON") != "" {
		t.Skip("EMBER_GO_TEST_NO_PYTHON is set")
	}
	needWorker(t)
	got := runPython(t, arrowPythonScript)
	if len(got) != 1 {
		t.Fatalf("Python printed %q", got)
	}

	// Python → Go: a pyarrow Table into an arrow.RecordBatch parameter,
	// the returned arrow.RecordBatch a pyarrow Table in Python.
	var fromPython struct {
		Type   string           `json:"type"`
		Scaled map[string][]any `json:"scaled"`
		Schema [][]string       `json:"schema"`
	}
	if err := json.Unmarshal([]byte(got[0]), &fromPython); err != nil {
		t.Fatalf("Python's results %q: %v", got[0], err)
	}
	if fromPython.Type != "pyarrow.lib.Table" || fmt.Sprint(fromPython.Scaled["x"]) != "[10 20 <nil>]" ||
		fmt.Sprint(fromPython.Scaled["name"]) != "[a b c]" || fmt.Sprint(fromPython.Schema) != "[[x int64] [name string]]" {
		t.Fatalf("Python called test.arrow_scale and got %s", got[0])
	}

	c := newClient(t)
	ctx := testContext(t, 120*time.Second)

	// Go → Python: a put record batch is a pyarrow Table there.
	const n = 40
	put, err := c.Put(ctx, arrowRows(0, n))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.Call(ctx, Function{Language: Python, Name: "gotest.arrow_describe"}, put)
	if err != nil {
		t.Fatal(err)
	}
	var desc struct {
		Type   string           `msgpack:"type"`
		Rows   int              `msgpack:"rows"`
		Schema [][]string       `msgpack:"schema"`
		Data   map[string][]any `msgpack:"data"`
	}
	if err := ref.Get(ctx, &desc); err != nil {
		t.Fatal(err)
	}
	if desc.Type != "pyarrow.lib.Table" || desc.Rows != n ||
		fmt.Sprint(desc.Schema) != "[[id int64] [score double] [label string] [flag bool]]" {
		t.Fatalf("Python read the Go record batch as %s, %d rows, %v", desc.Type, desc.Rows, desc.Schema)
	}
	for i := range n {
		var label, flag any
		if i%11 != 5 {
			label = fmt.Sprintf("row-%d", i)
		}
		if i%7 != 0 {
			flag = i%3 == 0
		}
		row := []any{desc.Data["id"][i], desc.Data["score"][i], desc.Data["label"][i], desc.Data["flag"][i]}
		want := []any{int64(i), float64(i) / 2, label, flag}
		if fmt.Sprintf("%#v", row) != fmt.Sprintf("%#v", want) {
			t.Fatalf("row %d in Python = %#v, want %#v", i, row, want)
		}
	}
	// A record batch argument by value (inline) too.
	ref, err = c.Call(ctx, Function{Language: Python, Name: "gotest.arrow_describe"}, arrowRows(0, 3))
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(ctx, &desc); err != nil || desc.Rows != 3 || fmt.Sprint(desc.Data["label"]) != "[row-0 row-1 row-2]" {
		t.Fatalf("an inline record batch in Python: %+v, %v", desc, err)
	}

	// Python → Go: a pyarrow Table returned, into arrow.Table (small and
	// large, the large through shared memory), and over Flight.
	for _, rows := range []int{0, 7, 300_000} {
		ref, err := c.Call(ctx, Function{Language: Python, Name: "gotest.arrow_make"}, rows)
		if err != nil {
			t.Fatal(err)
		}
		var tbl arrow.Table
		if err := ref.Get(ctx, &tbl); err != nil {
			t.Fatalf("gotest.arrow_make(%d): %v", rows, err)
		}
		checkRows(t, fmt.Sprintf("Python's gotest.arrow_make(%d)", rows), tbl, rows)
		pulled, err := ref.FlightTable(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, fmt.Sprintf("Python's gotest.arrow_make(%d) over Flight", rows), pulled, rows)
	}
	// A Go table through Python and back.
	table := arrowTable(5000, 1500)
	ref, err = c.Call(ctx, Function{Language: Python, Name: "gotest.arrow_echo"}, table)
	if err != nil {
		t.Fatal(err)
	}
	var back []arrow.RecordBatch
	if err := ref.Get(ctx, &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 4 {
		t.Fatalf("a table of 4 chunks came back from Python as %d batches", len(back))
	}
	checkRows(t, "a Go table echoed by Python", array.NewTableFromRecords(arrowSchema, back), 5000)
}
