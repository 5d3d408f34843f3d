// Command go-scoring-service is an HTTP service in Go in front of Python
// functions running on ember, and a Go worker that Python calls back.
//
//	POST /score        {"features": [1, 2, 3]}
//	    calls the Python function exported as "scoring.predict" with the
//	    features and answers its result: {"score": 4.75, "label": "high"}.
//	GET  /table?rows=N
//	    calls the Python function exported as "scoring.table", which returns
//	    a pyarrow Table (an ARROW object in the node's store), pulls that
//	    object from the node over Arrow Flight (ObjectRef.FlightRecords)
//	    and answers what it read:
//	    {"object_id": "<40 hex>", "rows": N, "batches": B,
//	     "columns": ["id", "score", "label"], "id_sum": N*(N-1)/2}.
//	GET  /wordcount?text=...
//	    calls the Rust function "rust.word_count" (served by the Rust SDK's
//	    example worker, sdk-rust/examples/worker.rs) and answers its result,
//	    a map word -> count: {"the": 2, "cat": 1}. A Rust worker used from Go.
//
// The same process serves the Go function "go.fib" to the cluster (an
// ember Go worker), so Python can call
// ember.cross_language.go_function("go.fib").remote(20).
//
// The node is found as every ember client finds it: $EMBER_ADDRESS and
// $EMBER_TOKEN, else the newest live session under $EMBER_TMPDIR (default
// /tmp/ember-<uid>). Once it listens and serves go.fib, it prints one line
// "READY http://<host:port>" on stdout. SIGINT or SIGTERM stop it.
//
// examples/cross_language.py builds it, runs it and checks its answers.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	ember "github.com/ember-run/ember/sdk-go"
)

// Calls to ember from one request give up after this long.
const callTimeout = 30 * time.Second

// maxRows bounds GET /table?rows=N.
const maxRows = 10_000_000

var (
	predictFn = ember.Function{Language: ember.Python, Name: "scoring.predict"}
	tableFn   = ember.Function{Language: ember.Python, Name: "scoring.table"}
	// Served by a Rust worker process (sdk-rust/examples/worker.rs).
	wordCountFn = ember.Function{Language: ember.Rust, Name: "rust.word_count"}
)

// Prediction is what scoring.predict returns (a Python dict).
type Prediction struct {
	Score float64 `msgpack:"score" json:"score"`
	Label string  `msgpack:"label" json:"label"`
}

// fib is served to the cluster as "go.fib": the n-th Fibonacci number.
func fib(n int) (int64, error) {
	if n < 0 || n > 92 {
		return 0, fmt.Errorf("fib(%d): n must be in [0, 92]", n)
	}
	a, b := int64(0), int64(1)
	for range n {
		a, b = b, a+b
	}
	return a, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP address to listen on (port 0: any free port)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("go-scoring-service: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, listen string) error {
	connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, err := ember.Connect(connectCtx, ember.Options{})
	if err != nil {
		return err
	}
	defer client.Close()

	// Serve go.fib. StartWorker returns once the node routes go.fib here;
	// the worker's own goroutines run the tasks until it is stopped.
	ember.Register("go.fib", fib)
	worker, err := ember.StartWorker(connectCtx, ember.ServeOptions{Names: []string{"go.fib"}, Concurrency: 4})
	if err != nil {
		return fmt.Errorf("serve go.fib: %w", err)
	}
	defer worker.Stop()

	s := &service{client: client}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /score", s.score)
	mux.HandleFunc("GET /table", s.table)
	mux.HandleFunc("GET /wordcount", s.wordCount)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("READY http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-worker.Done():
		_ = srv.Close()
		return fmt.Errorf("the go.fib worker stopped: %v", worker.Err())
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	}
}

type service struct {
	client *ember.Client
}

// score answers POST /score: scoring.predict(features).
func (s *service) score(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Features []float64 `json:"features"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body must be {\"features\": [numbers]}: %w", err))
		return
	}
	if req.Features == nil {
		writeError(w, http.StatusBadRequest, errors.New(`body must be {"features": [numbers]}`))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	ref, err := s.client.Call(ctx, predictFn, req.Features)
	if err != nil {
		writeCallError(w, err)
		return
	}
	defer ref.Release()
	var p Prediction
	if err := ref.Get(ctx, &p); err != nil {
		writeCallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// table answers GET /table?rows=N: the scoring.table(N) Arrow table, read
// over Arrow Flight.
func (s *service) table(w http.ResponseWriter, r *http.Request) {
	rows, err := strconv.Atoi(r.URL.Query().Get("rows"))
	if err != nil || rows < 0 || rows > maxRows {
		writeError(w, http.StatusBadRequest, fmt.Errorf("rows must be an integer in [0, %d]", maxRows))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	ref, err := s.client.Call(ctx, tableFn, rows)
	if err != nil {
		writeCallError(w, err)
		return
	}
	// The object lives while ref does: keep it until Flight has read it.
	defer ref.Release()
	// Waits for the result (a failed call is its *TaskError), then streams
	// its record batches from the node's Arrow Flight service.
	records, err := ref.FlightRecords(ctx)
	if err != nil {
		writeCallError(w, err)
		return
	}
	defer records.Release()
	summary, err := summarize(records)
	if err != nil {
		writeError(w, http.StatusBadGateway, fmt.Errorf("read %s over Arrow Flight: %w", ref.ID(), err))
		return
	}
	summary.ObjectID = ref.ID().String()
	writeJSON(w, http.StatusOK, summary)
}

// TableSummary is what GET /table answers.
type TableSummary struct {
	ObjectID string   `json:"object_id"`
	Rows     int64    `json:"rows"`
	Batches  int      `json:"batches"`
	Columns  []string `json:"columns"`
	// IDSum is the sum of the int64 column "id" (when there is one): the
	// data itself came through, not only the schema.
	IDSum int64 `json:"id_sum"`
}

// summarize reads every record batch of r and counts its rows.
func summarize(r array.RecordReader) (*TableSummary, error) {
	schema := r.Schema()
	out := &TableSummary{Columns: make([]string, 0, schema.NumFields())}
	for _, f := range schema.Fields() {
		out.Columns = append(out.Columns, f.Name)
	}
	idCol := -1
	if idx := schema.FieldIndices("id"); len(idx) == 1 && schema.Field(idx[0]).Type.ID() == arrow.INT64 {
		idCol = idx[0]
	}
	for r.Next() {
		batch := r.RecordBatch()
		out.Batches++
		out.Rows += batch.NumRows()
		if idCol >= 0 {
			ids := batch.Column(idCol).(*array.Int64)
			for i := range ids.Len() {
				if ids.IsValid(i) {
					out.IDSum += ids.Value(i)
				}
			}
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// wordCount answers GET /wordcount?text=...: rust.word_count(text), a
// map word -> count.
func (s *service) wordCount(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("text") {
		writeError(w, http.StatusBadRequest, errors.New("the text parameter is missing: /wordcount?text=..."))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	ref, err := s.client.Call(ctx, wordCountFn, q.Get("text"))
	if err != nil {
		writeCallError(w, err)
		return
	}
	defer ref.Release()
	counts := map[string]int64{}
	if err := ref.Get(ctx, &counts); err != nil {
		writeCallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, counts)
}

// writeCallError answers a failed ember call: the Python or Rust error of
// a failed task as 422, a name nobody serves (no Rust worker running) as
// 503, a timeout as 504, anything else as 502.
func writeCallError(w http.ResponseWriter, err error) {
	var taskErr *ember.TaskError
	switch {
	case errors.Is(err, ember.ErrUnknownFunction):
		writeError(w, http.StatusServiceUnavailable, err)
	case errors.As(err, &taskErr):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{
			"error":    taskErr.Message,
			"type":     taskErr.TypeName,
			"function": taskErr.FunctionName,
		})
	case errors.Is(err, ember.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, err)
	default:
		writeError(w, http.StatusBadGateway, err)
	}
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("write response: %v", err)
	}
}
