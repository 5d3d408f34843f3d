package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		tc.handler(rec, httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body)))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("%s %s %q: %d %s; want 400 with an error", tc.method, tc.target, tc.body, rec.Code, rec.Body)
		}
	}
}
