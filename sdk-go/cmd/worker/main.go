// Command worker is a Go worker process serving a fixed set of functions
// and an actor class, for tests and examples in every language. Other
// SDKs' tests start it (`go run ./cmd/worker` in sdk-go, or a binary built
// from it), so its names and behaviours are a contract:
//
//	function go.add(a, b int64) int64     a + b
//	function go.fail(msg string) error    always fails: a TaskError (TASK_FAILED,
//	                                      language GO, type *errors.errorString)
//	                                      whose message is msg
//	function go.echo(v any) any           v, as it arrived (msgpack round trip)
//	actor class go.Counter(start int64)   a counter starting at start:
//	    Incr(by int64) int64              adds by, returns the new value
//	    Get() int64                       the value
//	    Fail(msg string) error            always fails with msg (the actor goes on)
//	    Pid() int64                       the pid of this process
//
// Methods may be called "Incr" or "incr" (see ember.RegisterActor). It
// finds the node as every ember client does ($EMBER_ADDRESS and
// $EMBER_TOKEN, else the newest live session under $EMBER_TMPDIR, default
// /tmp/ember-<uid>), prints one line "ready" on stdout once the node routes
// those names to it, and serves until SIGINT or SIGTERM (then exits 0) or
// until its connection to the node breaks (then exits 1).
//
//	-concurrency N   function calls at once (default: the number of CPUs)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	ember "github.com/ember-run/ember/sdk-go"
)

// Counter is the go.Counter actor.
type Counter struct {
	mu sync.Mutex // calls run one at a time unless created with MaxConcurrency > 1
	n  int64
}

// NewCounter is go.Counter's constructor.
func NewCounter(start int64) *Counter { return &Counter{n: start} }

// Incr adds by and returns the new value.
func (c *Counter) Incr(by int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += by
	return c.n
}

// Get returns the value.
func (c *Counter) Get() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Fail always fails with msg.
func (c *Counter) Fail(msg string) error { return errors.New(msg) }

// Pid is the pid of the process hosting the actor.
func (c *Counter) Pid() int64 { return int64(os.Getpid()) }

func register() {
	ember.Register("go.add", func(a, b int64) int64 { return a + b })
	ember.Register("go.fail", func(msg string) error { return errors.New(msg) })
	ember.Register("go.echo", func(v any) any { return v })
	ember.RegisterActor("go.Counter", NewCounter)
}

func main() {
	concurrency := flag.Int("concurrency", runtime.NumCPU(), "function calls at once")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("ember go worker: ")
	register()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	w, err := ember.StartWorker(startCtx, ember.ServeOptions{Concurrency: *concurrency})
	cancel()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ready")
	select {
	case <-ctx.Done():
		w.Stop()
	case <-w.Done():
		log.Fatalf("stopped: %v", w.Err())
	}
}
