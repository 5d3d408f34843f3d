package ember

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/sdk-go/internal/core"
)

func TestPutGetSmall(t *testing.T) {
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	cases := []struct {
		in   any
		into func() any
		want any
	}{
		{42, func() any { return new(int) }, 42},
		{-7, func() any { return new(int64) }, int64(-7)},
		{"héllo", func() any { return new(string) }, "héllo"},
		{3.25, func() any { return new(float64) }, 3.25},
		{true, func() any { return new(bool) }, true},
		{[]byte{1, 2, 3}, func() any { return new([]byte) }, []byte{1, 2, 3}},
		{[]string{"a", "b"}, func() any { return new([]string) }, []string{"a", "b"}},
		{map[string]int{"x": 1, "y": 2}, func() any { return new(map[string]int) }, map[string]int{"x": 1, "y": 2}},
		{Person{Name: "Ada", Age: 36, Tags: []string{"math"}}, func() any { return new(Person) }, Person{Name: "Ada", Age: 36, Tags: []string{"math"}}},
		{nil, func() any { return new(any) }, nil},
		{[]any{int64(1), "two", 3.5, nil}, func() any { return new(any) }, []any{int64(1), "two", 3.5, nil}},
		{Raw("raw bytes"), func() any { return new([]byte) }, []byte("raw bytes")},
	}
	for i, tc := range cases {
		ref, err := c.Put(ctx, tc.in)
		if err != nil {
			t.Fatalf("case %d: Put(%#v): %v", i, tc.in, err)
		}
		out := tc.into()
		if err := ref.Get(ctx, out); err != nil {
			t.Fatalf("case %d: Get: %v", i, err)
		}
		if got := reflect.ValueOf(out).Elem().Interface(); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("case %d: got %#v, want %#v", i, got, tc.want)
		}
		// Through the client too, and twice.
		out2 := tc.into()
		if err := c.Get(ctx, ref, out2); err != nil || !reflect.DeepEqual(out2, out) {
			t.Fatalf("case %d: second Get = %#v, %v", i, out2, err)
		}
		ref.Release()
	}
}

func TestPutGetLargeThroughSharedMemory(t *testing.T) {
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	before := c.rt.Stats()
	ref, err := c.Put(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	var back []byte
	if err := ref.Get(ctx, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, big) {
		t.Fatalf("5 MB value came back different (len %d)", len(back))
	}
	after := c.rt.Stats()
	if after.ShmPuts != before.ShmPuts+1 || after.ShmGets != before.ShmGets+1 {
		t.Fatalf("the 5 MB value did not go through shared memory: stats %+v -> %+v", before, after)
	}
	// Another client reads it too (by its id, from the node's store).
	other := newClient(t)
	ref2 := other.refFromID(t, ref)
	var back2 []byte
	if err := ref2.Get(ctx, &back2); err != nil || !bytes.Equal(back2, big) {
		t.Fatalf("second client: len %d, %v", len(back2), err)
	}
	ref2.Release()
	ref.Release()
	if err := ref.Get(ctx, &back); !errors.Is(err, ErrReleased) {
		t.Fatalf("Get after Release = %v, want ErrReleased", err)
	}
}

// refFromID borrows a reference to an object another client made.
func (c *Client) refFromID(t *testing.T, ref ObjectRef) ObjectRef {
	t.Helper()
	id := ref.h.id
	c.rt.AddRef(id)
	return c.newRef(id)
}

func TestCallGoFunction(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	ref, err := c.Call(ctx, Function{Language: Go, Name: "test.add"}, 2, 40)
	if err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := ref.Get(ctx, &sum); err != nil {
		t.Fatal(err)
	}
	if sum != 42 {
		t.Fatalf("test.add(2, 40) = %d", sum)
	}
	// A struct argument and a struct result.
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.greet"}, Person{Name: "Grace", Age: 85, Tags: []string{"navy", "cobol"}}, "Hello")
	if err != nil {
		t.Fatal(err)
	}
	var g Greeting
	if err := c.Get(ctx, ref, &g); err != nil {
		t.Fatal(err)
	}
	if g.Text != "Hello, Grace (navy+cobol)" || g.NextAge != 86 {
		t.Fatalf("test.greet = %+v", g)
	}
	// The result read as a generic map: the struct's msgpack field names.
	var generic map[string]any
	if err := ref.Get(ctx, &generic); err != nil {
		t.Fatal(err)
	}
	if generic["text"] != "Hello, Grace (navy+cobol)" || generic["next_age"] != int64(86) {
		t.Fatalf("generic result = %#v", generic)
	}
	// Variadic, any, and a put value passed by reference.
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.sum"}, 1.5, 2, 3.5)
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	if err := ref.Get(ctx, &total); err != nil || total != 7 {
		t.Fatalf("test.sum = %v, %v", total, err)
	}
	put, err := c.Put(ctx, map[string]any{"k": []any{"v", int64(1)}})
	if err != nil {
		t.Fatal(err)
	}
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.echo"}, put)
	if err != nil {
		t.Fatal(err)
	}
	var echoed any
	if err := ref.Get(ctx, &echoed); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(echoed, map[string]any{"k": []any{"v", int64(1)}}) {
		t.Fatalf("test.echo = %#v", echoed)
	}
	// A task's result passed on to another task.
	first, err := c.Call(ctx, Function{Language: Go, Name: "test.add"}, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Call(ctx, Function{Language: Go, Name: "test.add"}, first, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Get(ctx, &sum); err != nil || sum != 13 {
		t.Fatalf("chained add = %d, %v", sum, err)
	}
	// A task that calls another task through its worker's client.
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.nested"}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(ctx, &sum); err != nil || sum != 105 {
		t.Fatalf("test.nested(5) = %d, %v", sum, err)
	}
}

func TestCallManyAndWait(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	const n = 2000
	refs := make([]ObjectRef, n)
	for i := range refs {
		ref, err := c.Call(ctx, Function{Language: Go, Name: "test.add"}, i, i)
		if err != nil {
			t.Fatal(err)
		}
		refs[i] = ref
	}
	ready, notReady, err := c.Wait(ctx, refs, n, -1)
	if err != nil || len(ready) != n || len(notReady) != 0 {
		t.Fatalf("Wait: %d ready, %d not, %v", len(ready), len(notReady), err)
	}
	for i, ref := range refs {
		var got int
		if err := ref.Get(ctx, &got); err != nil || got != 2*i {
			t.Fatalf("call %d = %d, %v", i, got, err)
		}
		ref.Release()
	}
	// Wait returns what is ready when the timeout passes.
	slow, err := c.Call(ctx, Function{Language: Go, Name: "test.sleep"}, 3000)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := c.Call(ctx, Function{Language: Go, Name: "test.sleep"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ready, notReady, err = c.Wait(ctx, []ObjectRef{slow, fast}, 1, 20*time.Second)
	if err != nil || len(ready) != 1 || ready[0] != fast || len(notReady) != 1 || notReady[0] != slow {
		t.Fatalf("Wait(slow, fast, 1) = %v, %v, %v", ready, notReady, err)
	}
	start := time.Now()
	ready, _, err = c.Wait(ctx, []ObjectRef{slow}, 1, 50*time.Millisecond)
	if err != nil || len(ready) != 0 || time.Since(start) > 2*time.Second {
		t.Fatalf("Wait with a short timeout = %v, %v after %v", ready, err, time.Since(start))
	}
}

func TestLargeArgumentAndResult(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	big := bytes.Repeat([]byte("0123456789"), 500_000) // 5 MB
	ref, err := c.Call(ctx, Function{Language: Go, Name: "test.len"}, big)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := ref.Get(ctx, &n); err != nil || n != len(big) {
		t.Fatalf("test.len(5 MB) = %d, %v", n, err)
	}
	// A 5 MB result: the worker writes it into shared memory.
	before := c.rt.Stats()
	workerBefore := mainWorker.client.rt.Stats()
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.make_bytes"}, 5<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	if err := ref.Get(ctx, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 5<<20 || out[1000] != byte(1000%251) || out[len(out)-1] != byte((len(out)-1)%251) {
		t.Fatalf("test.make_bytes(5 MB) came back wrong (len %d)", len(out))
	}
	if c.rt.Stats().ShmGets != before.ShmGets+1 || mainWorker.client.rt.Stats().ShmReturn != workerBefore.ShmReturn+1 {
		t.Fatalf("the 5 MB result did not go through shared memory: %+v / worker %+v", c.rt.Stats(), mainWorker.client.rt.Stats())
	}
}

func TestGoFunctionErrors(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	ref, err := c.Call(ctx, Function{Language: Go, Name: "test.fail"}, "the disk is on fire")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = ref.Get(ctx, &n)
	var te *TaskError
	if !errors.As(err, &te) {
		t.Fatalf("Get = %v (%T), want a *TaskError", err, err)
	}
	if te.Kind != KindTaskFailed || te.Language != Go || te.FunctionName != "test.fail" ||
		te.Message != "wrapped: the disk is on fire" || te.TypeName != "*fmt.wrapError" {
		t.Fatalf("TaskError = %+v", te)
	}
	if !strings.Contains(te.Traceback, "*errors.errorString: the disk is on fire") {
		t.Fatalf("traceback does not show the error chain:\n%s", te.Traceback)
	}
	if !strings.Contains(err.Error(), "the disk is on fire") {
		t.Fatalf("Error() = %q", err.Error())
	}
	// A panic is a TaskError with the stack.
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.panic"})
	if err != nil {
		t.Fatal(err)
	}
	err = ref.Get(ctx, &n)
	if !errors.As(err, &te) || te.Message != "the function panicked" || !strings.Contains(te.TypeName, "panic") ||
		!strings.Contains(te.Traceback, "goroutine") {
		t.Fatalf("panic: %v / %+v", err, te)
	}
	// Arguments that do not fit the parameters.
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.add"}, "two", 2)
	if err != nil {
		t.Fatal(err)
	}
	err = ref.Get(ctx, &n)
	if !errors.As(err, &te) || te.TypeName != "ember.ArgumentError" || !strings.Contains(te.Message, "argument 0") {
		t.Fatalf("bad argument: %v", err)
	}
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.add"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err = ref.Get(ctx, &n); !errors.As(err, &te) || !strings.Contains(te.Message, "takes 2 arguments, got 1") {
		t.Fatalf("missing argument: %v", err)
	}
	// The worker keeps serving after all that.
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.add"}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(ctx, &n); err != nil || n != 2 {
		t.Fatalf("after the failures: %d, %v", n, err)
	}
}

func TestUnknownFunctionFailsFast(t *testing.T) {
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	for _, fn := range []Function{{Language: Go, Name: "nobody.serves.this"}, {Language: Rust, Name: "nor.this"}} {
		ref, err := c.Call(ctx, fn, 1)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		getCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = ref.Get(getCtx, nil)
		cancel()
		if !errors.Is(err, ErrUnknownFunction) {
			t.Fatalf("Get of %s = %v, want ErrUnknownFunction", fn.Name, err)
		}
		if !strings.Contains(err.Error(), fn.Name) {
			t.Fatalf("the error does not name %s: %v", fn.Name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("unknown function took %v to fail", d)
		}
	}
}

func TestGetHonoursContext(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	ref, err := c.Call(ctx, Function{Language: Go, Name: "test.sleep"}, 4000)
	if err != nil {
		t.Fatal(err)
	}
	// Cancelled while waiting: returns at once with ctx.Err().
	getCtx := getCancelledMidway(t, ctx, ref)
	// Already cancelled: at once.
	var n int
	start := time.Now()
	if err := ref.Get(getCtx, &n); err != context.Canceled || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("Get with a cancelled context = %v after %v", err, time.Since(start))
	}
	// A deadline: ErrTimeout and context.DeadlineExceeded.
	dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer dcancel()
	err = ref.Get(dctx, &n)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get past a deadline = %v", err)
	}
	// The value still arrives for a later Get.
	if err := ref.Get(ctx, &n); err != nil || n != 4000 {
		t.Fatalf("later Get = %d, %v", n, err)
	}
	// Wait honours cancellation too.
	ref2, err := c.Call(ctx, Function{Language: Go, Name: "test.sleep"}, 3000)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	wcancel()
	if _, _, err := c.Wait(wctx, []ObjectRef{ref2}, 1, -1); err != context.Canceled {
		t.Fatalf("Wait with a cancelled context = %v", err)
	}
}

// getCancelledMidway gets ref with a context cancelled 100 ms later: the
// Get must end within a second with context.Canceled. It returns that
// (cancelled) context.
func getCancelledMidway(t *testing.T, ctx context.Context, ref ObjectRef) context.Context {
	t.Helper()
	getCtx, cancel := context.WithCancel(ctx)
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	var n int
	if err := ref.Get(getCtx, &n); err != context.Canceled {
		t.Fatalf("cancelled Get = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancelled Get returned after %v", d)
	}
	return getCtx
}

// After a sync call the reader goroutine stands by and a Get that waits
// reads the socket itself: its context's end and Close still end it at
// once, and calls go on working.
func TestGetReadingItselfHonoursContextAndClose(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	sleep := Function{Language: Go, Name: "test.sleep"}
	syncCall := func() {
		t.Helper()
		ref, err := c.Call(ctx, sleep, 0)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := ref.Get(ctx, &n); err != nil || n != 0 {
			t.Fatalf("sync call = %d, %v", n, err)
		}
		ref.Release()
	}
	standBy := func() {
		t.Helper()
		for i := 0; ; i++ {
			syncCall()
			if c.rt.StandingBy() {
				return
			}
			if i == 100 {
				t.Fatal("the reader goroutine never stood by after sync calls")
			}
			time.Sleep(time.Duration(i) * 100 * time.Microsecond)
		}
	}
	standBy()
	ref, err := c.Call(ctx, sleep, 4000)
	if err != nil {
		t.Fatal(err)
	}
	getCancelledMidway(t, ctx, ref)
	ref.Release()
	standBy()
	var n int
	dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer dcancel()
	ref, err = c.Call(ctx, sleep, 4000)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(dctx, &n); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Get past a deadline = %v", err)
	}
	// A call in flight besides: the reader goroutine keeps the socket.
	ref.Release()
	standBy()
	ref, err = c.Call(ctx, sleep, 4000)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		c.Close()
	}()
	start := time.Now()
	if err := ref.Get(ctx, &n); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get across Close = %v, want ErrClosed", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Get across Close returned after %v", d)
	}
}

func TestReleaseFreesObjects(t *testing.T) {
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	count := func() uint64 {
		st, err := c.rt.ClusterStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.NumObjects
	}
	var refs []ObjectRef
	for i := 0; i < 50; i++ {
		ref, err := c.Put(ctx, strings.Repeat("x", 1000+i))
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	// (Objects of earlier tests may still be on their way out: only this
	// test's 50 are counted on.)
	full := count()
	if full < 50 {
		t.Fatalf("after 50 puts the node has %d objects", full)
	}
	for _, r := range refs {
		r.Release()
		r.Release() // twice is once
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() > full-50 {
		if time.Now().After(deadline) {
			t.Fatalf("released objects were not freed: %d objects, %d before the releases", count(), full)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// References nobody holds any more are released by the garbage collector.
	func() {
		for i := 0; i < 30; i++ {
			if _, err := c.Put(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
	}()
	full = count()
	if full < 30 {
		t.Fatalf("after 30 puts the node has %d objects", full)
	}
	deadline = time.Now().Add(20 * time.Second)
	for count() > full-30 {
		if time.Now().After(deadline) {
			t.Fatalf("unreachable refs were not released: %d objects, %d before", count(), full)
		}
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWorkerKilledMidTaskIsRetried(t *testing.T) {
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	marker := filepath.Join(t.TempDir(), "started")
	child := startChildWorker(t, []string{"test.crash"}, envMarker+"="+marker)
	ref, err := c.Call(ctx, Function{Language: Go, Name: "test.crash"})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the child runs the task.
	deadline := time.Now().Add(60 * time.Second)
	var childPid int
	for {
		if data, err := os.ReadFile(marker); err == nil && len(data) > 0 {
			childPid, _ = strconv.Atoi(string(data))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child worker never started the task")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if childPid != child.Process.Pid {
		t.Fatalf("the task runs in pid %d, the child is %d", childPid, child.Process.Pid)
	}
	// A second server of the name (this process), then the first dies.
	w, err := StartWorker(ctx, ServeOptions{Options: testOptions(t), Names: []string{"test.crash"}, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ref.Ready() {
		t.Fatal("the result is there before the worker died")
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := ref.Get(ctx, &pid); err != nil {
		t.Fatalf("the retried task failed: %v", err)
	}
	if pid != os.Getpid() {
		t.Fatalf("the retried task ran in pid %d, want this process (%d)", pid, os.Getpid())
	}
}

func TestWorkerKilledWithoutRetries(t *testing.T) {
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	marker := filepath.Join(t.TempDir(), "started")
	child := startChildWorker(t, []string{"test.crash"}, envMarker+"="+marker)
	ref, err := c.CallWith(ctx, Function{Language: Go, Name: "test.crash"}, CallOptions{MaxRetries: Retries(0)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if data, err := os.ReadFile(marker); err == nil && len(data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child worker never started the task")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = ref.Get(ctx, nil)
	if !errors.Is(err, ErrWorkerCrashed) {
		t.Fatalf("Get = %v, want ErrWorkerCrashed", err)
	}
}

func TestWrongToken(t *testing.T) {
	opts := testOptions(t)
	opts.Token = "not-the-token"
	start := time.Now()
	c, err := Connect(testContext(t, 30*time.Second), opts)
	if err == nil {
		c.Close()
		t.Fatal("Connect with a wrong token succeeded")
	}
	if !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("Connect with a wrong token = %v, want ErrUnauthenticated", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("refusal took %v", time.Since(start))
	}
	// Over gRPC too.
	opts.Remote = true
	opts.Address = node.Info.Address
	c, err = Connect(testContext(t, 30*time.Second), opts)
	if err == nil {
		c.Close()
		t.Fatal("remote Connect with a wrong token succeeded")
	}
	if !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("remote Connect with a wrong token = %v, want ErrUnauthenticated", err)
	}
}

func TestConnectFindsSession(t *testing.T) {
	// By address (the session with that address), and the newest session.
	opts := testOptions(t)
	for _, o := range []Options{opts, {SessionRoot: opts.SessionRoot, Address: node.Info.Address}} {
		c, err := Connect(testContext(t, 30*time.Second), o)
		if err != nil {
			t.Fatalf("Connect(%+v): %v", o, err)
		}
		if !c.rt.Local() {
			t.Fatalf("Connect(%+v) did not use the local socket", o)
		}
		if c.Address() != node.Info.Address || c.Token() != node.Info.Token {
			t.Fatalf("Connect(%+v): Address() = %q, Token() = %q; want the session's %q, %q", o, c.Address(), c.Token(), node.Info.Address, node.Info.Token)
		}
		c.Close()
	}
	// EMBER_TMPDIR names the root when Options do not.
	t.Setenv("EMBER_TMPDIR", opts.SessionRoot)
	c, err := Connect(testContext(t, 30*time.Second), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// No session: a clear error, at once.
	_, err = Connect(testContext(t, 30*time.Second), Options{SessionRoot: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no running ember node") {
		t.Fatalf("Connect without a session = %v", err)
	}
}

func TestRemoteTransport(t *testing.T) {
	needWorker(t)
	opts := testOptions(t)
	c, err := Connect(testContext(t, 30*time.Second), Options{Address: node.Info.Address, Token: node.Info.Token, Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = opts
	if c.rt.Local() {
		t.Fatal("a remote client thinks it has shared memory")
	}
	if wc := mainWorker.Client(); wc.Address() != node.Info.Address || wc.Token() != node.Info.Token {
		t.Fatalf("worker client: Address() = %q, Token() = %q; want %q, %q", wc.Address(), wc.Token(), node.Info.Address, node.Info.Token)
	}
	if c.Address() != node.Info.Address || c.Token() != node.Info.Token {
		t.Fatalf("remote client: Address() = %q, Token() = %q; want %q, %q", c.Address(), c.Token(), node.Info.Address, node.Info.Token)
	}
	ctx := testContext(t, 60*time.Second)
	ref, err := c.Call(ctx, Function{Language: Go, Name: "test.add"}, 20, 22)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := ref.Get(ctx, &n); err != nil || n != 42 {
		t.Fatalf("remote call = %d, %v", n, err)
	}
	// A 1 MB value travels inline over gRPC.
	big := bytes.Repeat([]byte{7}, 1<<20)
	put, err := c.Put(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.len"}, put)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(ctx, &n); err != nil || n != 1<<20 {
		t.Fatalf("remote len = %d, %v", n, err)
	}
	var back []byte
	if err := put.Get(ctx, &back); err != nil || !bytes.Equal(back, big) {
		t.Fatalf("remote get of the put = %d bytes, %v", len(back), err)
	}
	// A 30 MB put travels by value; the node stores it in shared memory,
	// where a worker reads it, and the remote client reads it back.
	huge := bytes.Repeat([]byte{9, 8, 7}, 10<<20)
	hugeRef, err := c.Put(ctx, huge)
	if err != nil {
		t.Fatalf("remote put of 30 MB: %v", err)
	}
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.len"}, hugeRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(ctx, &n); err != nil || n != len(huge) {
		t.Fatalf("a worker's len of the remote 30 MB put = %d, %v", n, err)
	}
	back = nil
	if err := hugeRef.Get(ctx, &back); err != nil || !bytes.Equal(back, huge) {
		t.Fatalf("remote get of the 30 MB put = %d bytes, %v", len(back), err)
	}
	// Over the limit of a remote put: refused here, the stream unharmed.
	if _, err := c.Put(ctx, make([]byte, core.MaxRemotePutBytes+1)); err == nil || !strings.Contains(err.Error(), "remote connection") {
		t.Fatalf("remote put over the limit = %v, want a clear error", err)
	}
	// A 40 MB result, stored in the node's shared memory, reaches the remote
	// client by value (twice: each Get asks again).
	ref, err = c.Call(ctx, Function{Language: Go, Name: "test.make_bytes"}, 40<<20)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var large []byte
		if err := ref.Get(ctx, &large); err != nil {
			t.Fatalf("remote get of a 40 MB result: %v", err)
		}
		if len(large) != 40<<20 || large[12345] != byte(12345%251) || large[len(large)-1] != byte((len(large)-1)%251) {
			t.Fatalf("remote get of a 40 MB result: %d bytes, wrong content", len(large))
		}
	}
}

func TestClosedClient(t *testing.T) {
	opts := testOptions(t)
	c, err := Connect(testContext(t, 30*time.Second), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 30*time.Second)
	ref, err := c.Put(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.Put(ctx, 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close = %v", err)
	}
	if _, err := c.Call(ctx, Function{Language: Go, Name: "test.add"}, 1, 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Call after Close = %v", err)
	}
	ref.Release()
	_ = c.Close()
}
