package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
