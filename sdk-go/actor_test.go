package ember

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/sdk-go/internal/core"
	"github.com/ember-run/ember/sdk-go/internal/worker"
)

// Actor classes hosted by the in-process worker (needWorker).

// testCounter is the test.Counter actor.
type testCounter struct {
	n int64
}

func newTestCounter(start int64) (*testCounter, error) {
	if start < 0 {
		return nil, fmt.Errorf("the start must not be negative, got %d", start)
	}
	return &testCounter{n: start}, nil
}

func (c *testCounter) Incr(by int64) int64 { c.n += by; return c.n }

func (c *testCounter) Get() int64 { return c.n }

func (c *testCounter) Fail(msg string) (int64, error) { return 0, errors.New(msg) }

func (c *testCounter) Panic() int { panic("the method panicked") }

func (c *testCounter) Pid() int { return os.Getpid() }

// Blob returns n bytes and adds the length of b.
func (c *testCounter) Blob(b []byte, n int) []byte {
	c.n += int64(len(b))
	return bytes.Repeat([]byte{7}, n)
}

// Meet waits until n calls of Meet(key, ...) are inside at once (in any
// actor of this process), or fails after timeoutMs.
func (c *testCounter) Meet(ctx context.Context, key string, n, timeoutMs int) (int, error) {
	return meet(ctx, key, n, time.Duration(timeoutMs)*time.Millisecond)
}

// Unusable has a shape Register refuses: calling it says so.
func (c *testCounter) Unusable() (int, int, error) { return 0, 0, nil }

var (
	meetMu   sync.Mutex
	meetings = map[string]*meeting{}
)

type meeting struct {
	count int
	all   chan struct{}
}

func meetingStarted(key string) bool { return meetingCount(key) > 0 }

// meetingCount is how many Meet(key, ...) calls have come in.
func meetingCount(key string) int {
	meetMu.Lock()
	defer meetMu.Unlock()
	if m := meetings[key]; m != nil {
		return m.count
	}
	return 0
}

func meet(ctx context.Context, key string, n int, timeout time.Duration) (int, error) {
	meetMu.Lock()
	m := meetings[key]
	if m == nil {
		m = &meeting{all: make(chan struct{})}
		meetings[key] = m
	}
	m.count++
	if m.count == n {
		close(m.all)
	}
	meetMu.Unlock()
	select {
	case <-m.all:
		return n, nil
	case <-time.After(timeout):
		meetMu.Lock()
		defer meetMu.Unlock()
		return 0, fmt.Errorf("only %d of %d calls met at %q", m.count, n, key)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// testAccount is test.Account: a constructor with a context and without
// an error.
type testAccount struct {
	owner   string
	balance float64
}

func (a *testAccount) Deposit(amount float64) float64 { a.balance += amount; return a.balance }

func (a *testAccount) Owner() string { return a.owner }

func init() {
	RegisterActor("test.Counter", newTestCounter)
	RegisterActor("test.Account", func(ctx context.Context, owner string) *testAccount {
		if ClientFromContext(ctx) == nil {
			panic("no client in the constructor's context")
		}
		return &testAccount{owner: owner}
	})
}

var counterClass = Class{Language: Go, Name: "test.Counter"}

func getInt(t *testing.T, ctx context.Context, ref ObjectRef) int64 {
	t.Helper()
	var n int64
	if err := ref.Get(ctx, &n); err != nil {
		t.Fatalf("Get: %v", err)
	}
	return n
}

func call(t *testing.T, ctx context.Context, a *Actor, method string, args ...any) ObjectRef {
	t.Helper()
	ref, err := a.Call(ctx, method, args...)
	if err != nil {
		t.Fatalf("%s.Call(%s): %v", a, method, err)
	}
	return ref
}

func TestRegisterActorShapes(t *testing.T) {
	bad := []struct {
		name string
		ctor any
		want string
	}{
		{"", newTestCounter, "empty class name"},
		{"x.notfunc", 42, "is not a function"},
		{"x.value", func() testCounter { return testCounter{} }, "must return (*T, error) or *T"},
		{"x.noresult", func() {}, "must return"},
		{"x.seconderr", func() (*testCounter, int) { return nil, 0 }, "must return"},
		{"x.nomethods", func() *meetingless { return nil }, "no exported method"},
		{"test.Counter", newTestCounter, "already registered"},
	}
	for _, tc := range bad {
		err := worker.RegisterClass(tc.name, tc.ctor)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("RegisterClass(%q, %T) = %v, want an error containing %q", tc.name, tc.ctor, err, tc.want)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("RegisterActor of a bad constructor did not panic")
			}
		}()
		RegisterActor("x.bad", 1)
	}()
	// The method-name rule.
	c := worker.LookupClass("test.Counter")
	for _, name := range []string{"Incr", "incr"} {
		if m, err := c.Method(name); err != nil || m.Name != "test.Counter.Incr" {
			t.Errorf("Method(%q) = %v, %v", name, m, err)
		}
	}
	for _, name := range []string{"INCR", "increment", "", "meet_up"} {
		if _, err := c.Method(name); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("no method %q", name)) ||
			!strings.Contains(err.Error(), "Get, Incr, Meet") {
			t.Errorf("Method(%q) = %v, want an error naming it and the methods", name, err)
		}
	}
	if _, err := c.Method("unusable"); err == nil || !strings.Contains(err.Error(), "Unusable") || !strings.Contains(err.Error(), "more than two results") {
		t.Errorf("Method(unusable) = %v", err)
	}
}

type meetingless struct{}

func TestActorCallsRunInOrder(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	a, err := c.CreateActor(ctx, counterClass, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() == (ActorID{}) || a.Class() != counterClass {
		t.Fatalf("actor %v", a)
	}
	const n = 200
	refs := make([]ObjectRef, n)
	for i := range refs {
		method := "Incr"
		if i%2 == 1 {
			method = "incr" // the first letter in lower case finds Incr too
		}
		refs[i] = call(t, ctx, a, method, 1)
	}
	for i, ref := range refs {
		if got := getInt(t, ctx, ref); got != int64(i+1) {
			t.Fatalf("call %d of Incr returned %d, want %d (calls out of order)", i, got, i+1)
		}
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Get")); got != n {
		t.Fatalf("Get = %d, want %d", got, n)
	}
	// Large arguments and results (through shared memory).
	var blob []byte
	if err := call(t, ctx, a, "Blob", make([]byte, 3<<20), 2<<20).Get(ctx, &blob); err != nil || len(blob) != 2<<20 || blob[12345] != 7 {
		t.Fatalf("Blob: %d bytes, %v", len(blob), err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Get")); got != n+3<<20 {
		t.Fatalf("Get after Blob = %d, want %d", got, n+3<<20)
	}
	// A constructor with a context and a single result.
	acct, err := c.CreateActor(ctx, Class{Language: Go, Name: "test.Account"}, "ada")
	if err != nil {
		t.Fatal(err)
	}
	call(t, ctx, acct, "deposit", 2.5)
	var balance float64
	var owner string
	if err := call(t, ctx, acct, "Deposit", 1).Get(ctx, &balance); err != nil || balance != 3.5 {
		t.Fatalf("Deposit = %v, %v", balance, err)
	}
	if err := call(t, ctx, acct, "owner").Get(ctx, &owner); err != nil || owner != "ada" {
		t.Fatalf("owner = %q, %v", owner, err)
	}
	// A large constructor argument (put into shared memory, given to the
	// worker by value).
	big := strings.Repeat("ada", 1<<20)
	acct, err = c.CreateActor(ctx, Class{Language: Go, Name: "test.Account"}, big)
	if err != nil {
		t.Fatal(err)
	}
	if err := call(t, ctx, acct, "Owner").Get(ctx, &owner); err != nil || owner != big {
		t.Fatalf("owner of %d bytes: %d bytes, %v", len(big), len(owner), err)
	}
}

func TestActorConcurrency(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	// One at a time by default: of two calls that wait for each other,
	// the first gives up (nobody else got in), then the second finds it.
	a, err := c.CreateActor(ctx, counterClass, 0)
	if err != nil {
		t.Fatal(err)
	}
	// (Meeting keys are new each run: -count=N.)
	key := fmt.Sprintf("%d", time.Now().UnixNano())
	first := call(t, ctx, a, "Meet", key+"serial", 2, 1500)
	second := call(t, ctx, a, "Meet", key+"serial", 2, 60_000)
	if err := first.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "only 1 of 2") {
		t.Fatalf("the first of two calls of one actor = %v, want it to time out alone", err)
	}
	if err := second.Get(ctx, nil); err != nil {
		t.Fatalf("the second call: %v", err)
	}
	// MaxConcurrency 3: three calls are inside at once.
	b, err := c.CreateActorWith(ctx, counterClass, ActorOptions{MaxConcurrency: 3}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var refs []ObjectRef
	for range 3 {
		refs = append(refs, call(t, ctx, b, "Meet", key+"three", 3, 60_000))
	}
	for _, ref := range refs {
		if err := ref.Get(ctx, nil); err != nil {
			t.Fatalf("MaxConcurrency 3: %v", err)
		}
	}
	// The same with each call sent once the one before is inside: a call
	// arriving while others run joins them.
	staged, err := c.CreateActorWith(ctx, counterClass, ActorOptions{MaxConcurrency: 3}, 0)
	if err != nil {
		t.Fatal(err)
	}
	refs = refs[:0]
	for i := range 3 {
		refs = append(refs, call(t, ctx, staged, "Meet", key+"staged", 3, 60_000))
		deadline := time.Now().Add(20 * time.Second)
		for meetingCount(key+"staged") <= i {
			if time.Now().After(deadline) {
				t.Fatalf("MaxConcurrency 3: call %d did not start beside the %d running", i+1, i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, ref := range refs {
		if err := ref.Get(ctx, nil); err != nil {
			t.Fatalf("MaxConcurrency 3, calls one by one: %v", err)
		}
	}
	// Different actors run in parallel.
	x, err := c.CreateActor(ctx, counterClass, 0)
	if err != nil {
		t.Fatal(err)
	}
	y, err := c.CreateActor(ctx, counterClass, 0)
	if err != nil {
		t.Fatal(err)
	}
	rx, ry := call(t, ctx, x, "Meet", key+"pair", 2, 60_000), call(t, ctx, y, "Meet", key+"pair", 2, 60_000)
	if err := rx.Get(ctx, nil); err != nil {
		t.Fatalf("two actors: %v", err)
	}
	if err := ry.Get(ctx, nil); err != nil {
		t.Fatalf("two actors: %v", err)
	}
}

func TestNamedActor(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	opts := ActorOptions{Name: "the-counter", Namespace: "gotest"}
	a, err := c.CreateActorWith(ctx, counterClass, opts, 100)
	if err != nil {
		t.Fatal(err)
	}
	// Got before the other client calls: calls from different clients are
	// ordered only per client.
	if got := getInt(t, ctx, call(t, ctx, a, "Incr", 1)); got != 101 {
		t.Fatalf("Incr = %d, want 101", got)
	}
	// Another client finds it by name.
	other := newClient(t)
	b, err := other.GetActor(ctx, "the-counter", "gotest")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID() != a.ID() || b.Class() != counterClass {
		t.Fatalf("GetActor = %v, want %v", b, a)
	}
	if got := getInt(t, ctx, call(t, ctx, b, "Incr", 10)); got != 111 {
		t.Fatalf("Incr through the second client's handle = %d, want 111", got)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Get")); got != 111 {
		t.Fatalf("Get through the first handle = %d, want 111", got)
	}
	// The name is taken, unless GetIfExists.
	if _, err := c.CreateActorWith(ctx, counterClass, opts, 0); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("a second actor of the same name: %v, want ErrNameTaken", err)
	}
	same, err := other.CreateActorWith(ctx, counterClass, ActorOptions{Name: "the-counter", Namespace: "gotest", GetIfExists: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if same.ID() != a.ID() {
		t.Fatalf("GetIfExists made %v, want the existing %v", same, a)
	}
	if got := getInt(t, ctx, call(t, ctx, same, "Get")); got != 111 {
		t.Fatalf("Get through the GetIfExists handle = %d, want 111", got)
	}
	// GetIfExists of a free name makes the actor.
	fresh, err := other.CreateActorWith(ctx, counterClass, ActorOptions{Name: "fresh", Namespace: "gotest", GetIfExists: true}, 7)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.ID() == a.ID() || getInt(t, ctx, call(t, ctx, fresh, "Get")) != 7 {
		t.Fatalf("GetIfExists of a free name: %v", fresh)
	}
	// Names that are not there: in another namespace, or never made.
	for _, tc := range [][2]string{{"the-counter", "elsewhere"}, {"nobody", "gotest"}} {
		_, err := other.GetActor(ctx, tc[0], tc[1])
		if !errors.Is(err, ErrActorNotFound) || !strings.Contains(err.Error(), tc[0]) {
			t.Fatalf("GetActor(%q, %q) = %v, want ErrActorNotFound naming it", tc[0], tc[1], err)
		}
	}
	// Killed for good: the name is free, and calls fail.
	if err := c.KillActor(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	if err := call(t, ctx, a, "Get").Get(ctx, nil); !errors.Is(err, ErrActorDied) {
		t.Fatalf("a call after KillActor = %v, want ErrActorDied", err)
	}
	if _, err := c.GetActor(ctx, "the-counter", "gotest"); !errors.Is(err, ErrActorNotFound) {
		t.Fatalf("GetActor of a killed actor = %v, want ErrActorNotFound", err)
	}
}

func TestKillActor(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	a, err := c.CreateActor(ctx, counterClass, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Incr", 1)); got != 6 {
		t.Fatalf("Incr = %d", got)
	}
	if !hosts(a.ID()) {
		t.Fatal("the in-process worker does not host the actor")
	}
	if err := c.KillActor(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		err := call(t, ctx, a, "Get").Get(ctx, nil)
		if !errors.Is(err, ErrActorDied) {
			t.Fatalf("call %d after the kill = %v, want ErrActorDied", i, err)
		}
	}
	// The worker dropped the instance.
	deadline := time.Now().Add(30 * time.Second)
	for hosts(a.ID()) {
		if time.Now().After(deadline) {
			t.Fatal("the worker still hosts the actor after the kill")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A call running when the actor is killed fails at once; the
	// method's context ends.
	busy, err := c.CreateActor(ctx, counterClass, 0)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("kill-%d", time.Now().UnixNano())
	running := call(t, ctx, busy, "Meet", key, 2, 100_000)
	queued := call(t, ctx, busy, "Get")
	deadline = time.Now().Add(30 * time.Second)
	for !meetingStarted(key) {
		if time.Now().After(deadline) {
			t.Fatal("the call never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := c.KillActor(ctx, busy, true); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []ObjectRef{running, queued} {
		if err := ref.Get(ctx, nil); !errors.Is(err, ErrActorDied) {
			t.Fatalf("a call of the killed actor = %v, want ErrActorDied", err)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the running call failed %v after the kill", d)
	}
	// Other actors go on.
	b, err := c.CreateActor(ctx, counterClass, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, call(t, ctx, b, "Get")); got != 1 {
		t.Fatalf("a new actor after the kill: Get = %d", got)
	}
}

// hosts says whether the in-process worker hosts the actor id.
func hosts(id ActorID) bool {
	mainWorker.actorsMu.Lock()
	defer mainWorker.actorsMu.Unlock()
	return mainWorker.actors[core.ActorID(id)] != nil
}

func TestActorErrors(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	a, err := c.CreateActor(ctx, counterClass, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A method that returns an error: a *TaskError with its message.
	err = call(t, ctx, a, "Fail", "the counter is sad").Get(ctx, nil)
	var te *TaskError
	if !errors.As(err, &te) || te.Kind != KindTaskFailed || te.Language != Go || te.Message != "the counter is sad" ||
		te.FunctionName != "test.Counter.Fail" || te.TypeName != "*errors.errorString" {
		t.Fatalf("Fail: %v (%+v)", err, te)
	}
	// A panic fails the call with its stack.
	err = call(t, ctx, a, "panic").Get(ctx, nil)
	if !errors.As(err, &te) || te.Message != "the method panicked" || !strings.Contains(te.TypeName, "panic") ||
		!strings.Contains(te.Traceback, "goroutine") {
		t.Fatalf("Panic: %v", err)
	}
	// Unknown or uncallable methods, bad arguments: errors naming them.
	err = call(t, ctx, a, "Explode", 1).Get(ctx, nil)
	if !errors.Is(err, ErrUnknownFunction) || !strings.Contains(err.Error(), `"Explode"`) || !strings.Contains(err.Error(), "test.Counter") {
		t.Fatalf("unknown method: %v", err)
	}
	err = call(t, ctx, a, "Unusable").Get(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot be called") {
		t.Fatalf("uncallable method: %v", err)
	}
	err = call(t, ctx, a, "Incr", "one").Get(ctx, nil)
	if !errors.As(err, &te) || te.TypeName != "ember.ArgumentError" || !strings.Contains(te.Message, "argument 0") {
		t.Fatalf("bad argument: %v", err)
	}
	// The actor goes on, its state intact.
	if got := getInt(t, ctx, call(t, ctx, a, "Incr", 3)); got != 3 {
		t.Fatalf("Incr after the failures = %d, want 3", got)
	}
}

func TestActorConstructorFails(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	a, err := c.CreateActor(ctx, counterClass, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"Get", "Incr", "Nope"} {
		var args []any
		if method == "Incr" {
			args = []any{1}
		}
		err := call(t, ctx, a, method, args...).Get(ctx, nil)
		var te *TaskError
		if !errors.As(err, &te) || te.Kind != KindTaskFailed || !strings.Contains(te.Message, "the start must not be negative, got -1") {
			t.Fatalf("%s after a failed constructor = %v, want its error", method, err)
		}
	}
	// Bad constructor arguments fail the same way.
	b, err := c.CreateActor(ctx, counterClass, "ten")
	if err != nil {
		t.Fatal(err)
	}
	err = call(t, ctx, b, "Get").Get(ctx, nil)
	var te *TaskError
	if !errors.As(err, &te) || te.TypeName != "ember.ArgumentError" {
		t.Fatalf("Get after bad constructor arguments = %v", err)
	}
}

func TestUnknownActorClass(t *testing.T) {
	c := newClient(t)
	ctx := testContext(t, 60*time.Second)
	for _, class := range []Class{{Language: Go, Name: "nobody.Hosts"}, {Language: Rust, Name: "nor.This"}} {
		a, err := c.CreateActor(ctx, class)
		if err != nil {
			if !strings.Contains(err.Error(), class.Name) {
				t.Fatalf("CreateActor(%s) = %v, want an error naming it", class.Name, err)
			}
			continue
		}
		getCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = call(t, ctx, a, "Get").Get(getCtx, nil)
		cancel()
		if !errors.Is(err, ErrActorDied) || !strings.Contains(err.Error(), class.Name) {
			t.Fatalf("a call of an actor of %s = %v, want ErrActorDied naming the class", class.Name, err)
		}
	}
}

func TestKillActorRestarts(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	a, err := c.CreateActorWith(ctx, counterClass, ActorOptions{MaxRestarts: 1}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Incr", 1)); got != 6 {
		t.Fatalf("Incr = %d", got)
	}
	// Killed with a restart left: made again (by its constructor).
	if err := c.KillActor(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Get")); got != 5 {
		t.Fatalf("Get after a kill with a restart left = %d, want 5 (the constructor's value)", got)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Incr", 2)); got != 7 {
		t.Fatalf("Incr after the restart = %d", got)
	}
	// No restart left.
	if err := c.KillActor(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	if err := call(t, ctx, a, "Get").Get(ctx, nil); !errors.Is(err, ErrActorDied) {
		t.Fatalf("a call after the second kill = %v, want ErrActorDied", err)
	}
}

func TestActorEndsWithItsOwner(t *testing.T) {
	needWorker(t)
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	owner, err := Connect(ctx, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	plain, err := owner.CreateActorWith(ctx, counterClass, ActorOptions{Name: "owned", Namespace: "gotest"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	detached, err := owner.CreateActorWith(ctx, counterClass, ActorOptions{Name: "detached", Namespace: "gotest", Detached: true}, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*Actor{plain, detached} {
		if err := call(t, ctx, a, "Get").Get(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	owner.Close()
	// The worker drops the owned actor; the detached one lives on.
	deadline := time.Now().Add(30 * time.Second)
	for hosts(plain.ID()) {
		if time.Now().After(deadline) {
			t.Fatal("the worker still hosts the actor 30 s after its owner left")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.GetActor(ctx, "owned", "gotest"); !errors.Is(err, ErrActorNotFound) {
		t.Fatalf("GetActor of an actor whose owner left = %v, want ErrActorNotFound", err)
	}
	d, err := c.GetActor(ctx, "detached", "gotest")
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, call(t, ctx, d, "Incr", 1)); got != 3 {
		t.Fatalf("the detached actor after its owner left: Incr = %d, want 3", got)
	}
	if err := c.KillActor(ctx, d, true); err != nil {
		t.Fatal(err)
	}
	if err := call(t, ctx, d, "Get").Get(ctx, nil); !errors.Is(err, ErrActorDied) {
		t.Fatalf("the detached actor after KillActor: %v", err)
	}
}
