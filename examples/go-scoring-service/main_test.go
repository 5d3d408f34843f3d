package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	ember "github.com/ember-run/ember/sdk-go"
)

// The end-to-end checks (a node, Python functions, Arrow Flight) are in
// examples/cross_language.py; these need no node.

func TestFib(t *testing.T) {
	want := []int64{0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55}
	for n, w := range want {
		if got, err := fib(n); err != nil || got != w {
			t.Fatalf("fib(%d) = %d, %v; want %d", n, got, err, w)
		}
	}
	if got, err := fib(92); err != nil || got != 7540113804746346429 {
		t.Fatalf("fib(92) = %d, %v", got, err)
	}
	for _, n := range []int{-1, 93} {
		if _, err := fib(n); err == nil {
			t.Fatalf("fib(%d) did not fail", n)
		}
	}
}

// summarize counts what GET /table answers from the record batches (here
// made locally; the service pulls them with ObjectRef.FlightRecords).
func TestSummarize(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "label", Type: arrow.BinaryTypes.String},
	}, nil)
	batch := func(from, n int) arrow.RecordBatch {
		b := array.NewRecordBuilder(memory.NewGoAllocator(), schema)
		defer b.Release()
		for i := from; i < from+n; i++ {
			if i == 3 {
				b.Field(0).(*array.Int64Builder).AppendNull()
			} else {
				b.Field(0).(*array.Int64Builder).Append(int64(i))
			}
			b.Field(1).(*array.StringBuilder).Append("x")
		}
		return b.NewRecordBatch()
	}
	r, err := array.NewRecordReader(schema, []arrow.RecordBatch{batch(0, 10), batch(10, 0), batch(10, 5)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	got, err := summarize(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows != 15 || got.Batches != 3 || strings.Join(got.Columns, ",") != "id,label" || got.IDSum != 105-3 {
		t.Fatalf("summarize = %+v", got)
	}
}

// Bad requests are answered before any call to ember.
func TestBadRequests(t *testing.T) {
	s := &service{}
	cases := []struct {
		method, target, body string
		handler              http.HandlerFunc
	}{
		{"POST", "/score", `{"rows": 3}`, s.score},
		{"POST", "/score", `{}`, s.score},
		{"POST", "/score", `{"features": ["a"]}`, s.score},
		{"POST", "/score", `not json`, s.score},
		{"GET", "/table", "", s.table},
		{"GET", "/table?rows=-1", "", s.table},
		{"GET", "/table?rows=ten", "", s.table},
		{"GET", "/wordcount", "", s.wordCount},
		{"GET", "/wordcount?txt=a+b", "", s.wordCount},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		tc.handler(rec, httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body)))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("%s %s %q: %d %s; want 400 with an error", tc.method, tc.target, tc.body, rec.Code, rec.Body)
		}
	}
}

// GET /wordcount against a running node ($EMBER_ADDRESS, or the newest
// session) with the Rust example worker serving rust.word_count; skipped
// without them (examples/cross_language.py runs it end to end).
func TestWordCount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := ember.Connect(ctx, ember.Options{})
	if err != nil {
		t.Skipf("no ember node: %v", err)
	}
	defer client.Close()
	s := &service{client: client}
	rec := httptest.NewRecorder()
	s.wordCount(rec, httptest.NewRequest("GET", "/wordcount?text=the+cat+saw+the+dog", nil))
	if rec.Code == http.StatusServiceUnavailable {
		t.Skipf("no Rust worker serves rust.word_count: %s", rec.Body)
	}
	var counts map[string]int
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &counts) != nil {
		t.Fatalf("GET /wordcount: %d %s", rec.Code, rec.Body)
	}
	if len(counts) != 4 || counts["the"] != 2 || counts["cat"] != 1 || counts["saw"] != 1 || counts["dog"] != 1 {
		t.Fatalf("GET /wordcount = %v", counts)
	}
}
