package ember

// Tests with worker processes other than this test binary: the example Go
// worker (cmd/worker, built once with `go build`) and the Rust SDK's
// example worker (sdk-rust/examples/worker.rs).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/sdk-go/internal/testnode"
)

var (
	goWorkerOnce sync.Once
	goWorkerPath string
	goWorkerErr  error
	// buildDir holds what the tests built; TestMain removes it.
	buildDir string
)

// goWorkerBinary is $EMBER_GO_WORKER, else cmd/worker built into a
// temporary directory (once per test run).
func goWorkerBinary(t *testing.T) string {
	t.Helper()
	if path := os.Getenv("EMBER_GO_WORKER"); path != "" {
		return path
	}
	goWorkerOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		buildDir, goWorkerErr = os.MkdirTemp("", "ember-go-test-build-")
		if goWorkerErr != nil {
			return
		}
		out := filepath.Join(buildDir, "go-worker")
		cmd := exec.Command(goTool, "build", "-o", out, "./cmd/worker")
		cmd.Dir = filepath.Join(testnode.RepoRoot(), "sdk-go")
		if output, err := cmd.CombinedOutput(); err != nil {
			goWorkerErr = fmt.Errorf("go build ./cmd/worker: %v\n%s", err, output)
			return
		}
		goWorkerPath = out
	})
	if goWorkerErr != nil {
		t.Fatal(goWorkerErr)
	}
	return goWorkerPath
}

// servingProcess is a worker process connected to the test node.
type servingProcess struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // its exit status, once exited is closed
}

// startServing runs binary (a worker that prints "ready" once it serves)
// against the test node, and stops it at the end of the test (SIGTERM,
// then SIGKILL).
func startServing(t *testing.T, binary string) *servingProcess {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "EMBER_TMPDIR="+node.Root, "EMBER_ADDRESS="+node.Info.Address)
	cmd.Stderr = os.Stderr
	// Its stdout through a pipe of our own: Wait (below, at once) does not
	// close it under the reader.
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		t.Fatalf("start %s: %v", binary, err)
	}
	p := &servingProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	ready := make(chan error, 1)
	go func() {
		defer stdout.Close()
		r := bufio.NewReader(stdout)
		var seen []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				ready <- fmt.Errorf("its stdout ended before \"ready\" (%v); it printed %q", err, seen)
				return
			}
			if strings.TrimSpace(line) == "ready" {
				ready <- nil
				break
			}
			seen = append(seen, line)
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%s did not start: %v", binary, err)
		}
	case <-time.After(120 * time.Second):
		t.Fatalf("%s did not print ready within 120 s", binary)
	}
	return p
}

func (p *servingProcess) pid() int { return p.cmd.Process.Pid }

// kill sends SIGKILL and waits until the process is gone.
func (p *servingProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("a SIGKILLed worker did not exit within 30 s")
	}
}

// stop sends SIGTERM and waits (10 s, then SIGKILL); it says whether the
// process exited of itself.
func (p *servingProcess) stop(t *testing.T) bool {
	select {
	case <-p.exited:
		return true
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return true
	case <-time.After(10 * time.Second):
		t.Errorf("worker %d did not exit within 10 s of SIGTERM", p.pid())
		_ = p.cmd.Process.Kill()
		<-p.exited
		return false
	}
}

var goCounter = Class{Language: Go, Name: "go.Counter"}

// TestGoWorkerProgram checks the contract of cmd/worker that other
// languages' tests rely on.
func TestGoWorkerProgram(t *testing.T) {
	bin := goWorkerBinary(t)
	c := newClient(t)
	ctx := testContext(t, 180*time.Second)
	p := startServing(t, bin)

	ref, err := c.Call(ctx, Function{Language: Go, Name: "go.add"}, 40, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, ref); got != 42 {
		t.Fatalf("go.add(40, 2) = %d", got)
	}
	value := map[string]any{"list": []any{int64(1), "two", 3.5, nil, true}, "bytes": []byte{0, 255}}
	ref, err = c.Call(ctx, Function{Language: Go, Name: "go.echo"}, value)
	if err != nil {
		t.Fatal(err)
	}
	var echoed any
	if err := ref.Get(ctx, &echoed); err != nil || fmt.Sprint(echoed) != fmt.Sprint(value) {
		t.Fatalf("go.echo = %#v, %v", echoed, err)
	}
	ref, err = c.Call(ctx, Function{Language: Go, Name: "go.fail"}, "no luck")
	if err != nil {
		t.Fatal(err)
	}
	var te *TaskError
	if err := ref.Get(ctx, nil); !errors.As(err, &te) || te.Kind != KindTaskFailed || te.Language != Go ||
		te.Message != "no luck" || te.FunctionName != "go.fail" {
		t.Fatalf("go.fail = %v", err)
	}

	a, err := c.CreateActor(ctx, goCounter, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "incr", 5)); got != 15 {
		t.Fatalf("go.Counter(10).incr(5) = %d", got)
	}
	var refs []ObjectRef
	for range 50 {
		refs = append(refs, call(t, ctx, a, "Incr", 1))
	}
	for i, r := range refs {
		if got := getInt(t, ctx, r); got != int64(16+i) {
			t.Fatalf("Incr %d = %d, want %d", i, got, 16+i)
		}
	}
	if got := getInt(t, ctx, call(t, ctx, a, "get")); got != 65 {
		t.Fatalf("get = %d", got)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Pid")); got != int64(p.pid()) {
		t.Fatalf("Pid = %d, the worker is %d", got, p.pid())
	}
	if err := call(t, ctx, a, "fail", "counter trouble").Get(ctx, nil); !errors.As(err, &te) || te.Message != "counter trouble" || te.Language != Go {
		t.Fatalf("fail = %v", err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Get")); got != 65 {
		t.Fatalf("Get after fail = %d", got)
	}
	// SIGTERM: a clean exit.
	if !p.stop(t) {
		return
	}
	if p.err != nil {
		t.Fatalf("the worker exited with %v after SIGTERM", p.err)
	}
}

func TestGoActorRestartsAfterWorkerKilled(t *testing.T) {
	bin := goWorkerBinary(t)
	c := newClient(t)
	ctx := testContext(t, 180*time.Second)
	first := startServing(t, bin)
	a, err := c.CreateActorWith(ctx, goCounter, ActorOptions{MaxRestarts: 2, MaxTaskRetries: 3}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Incr", 5)); got != 15 {
		t.Fatalf("Incr = %d", got)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Pid")); got != int64(first.pid()) {
		t.Fatalf("the actor runs in pid %d, not in the worker started for it (%d)", got, first.pid())
	}
	// A second process serving the class, then the first dies.
	second := startServing(t, bin)
	first.kill(t)
	// The actor is made again in the second process: the constructor's
	// state, not the lost one.
	if got := getInt(t, ctx, call(t, ctx, a, "Get")); got != 10 {
		t.Fatalf("Get after the restart = %d, want 10 (the constructor's value)", got)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Pid")); got != int64(second.pid()) {
		t.Fatalf("after the restart the actor runs in pid %d, want the second worker (%d)", got, second.pid())
	}
	if got := getInt(t, ctx, call(t, ctx, a, "Incr", 100)); got != 110 {
		t.Fatalf("Incr(100) after the restart = %d", got)
	}
	// Killed while calls are on their way: they are sent again to the
	// actor made again in a third process (MaxTaskRetries).
	third := startServing(t, bin)
	var refs []ObjectRef
	for range 20 {
		refs = append(refs, call(t, ctx, a, "Incr", 1))
	}
	if err := refs[0].Get(ctx, nil); err != nil { // they reached the process
		t.Fatal(err)
	}
	second.kill(t)
	// The calls that returned before the death count from 110, those sent
	// again from 10 anew: 111, ..., 110+j, then 11, ..., 30-j.
	got := make([]int64, len(refs))
	for i, r := range refs {
		if err := r.Get(ctx, &got[i]); err != nil {
			t.Fatalf("Incr %d, in flight when its process died: %v", i, err)
		}
	}
	j := 0
	for j < len(got) && got[j] == int64(111+j) {
		j++
	}
	for i := j; i < len(got); i++ {
		if got[i] != int64(11+i-j) {
			t.Fatalf("the Incr results around the restart: %v", got)
		}
	}
	if v := getInt(t, ctx, call(t, ctx, a, "Get")); v != int64(10+len(got)-j) {
		t.Fatalf("Get = %d after the Incr results %v (restart after %d), want %d", v, got, j, 10+len(got)-j)
	}
	t.Logf("%d of %d calls ran again after the restart", len(got)-j, len(got))
	if got := getInt(t, ctx, call(t, ctx, a, "Pid")); got != int64(third.pid()) {
		t.Fatalf("after the second restart the actor runs in pid %d, want the third worker (%d)", got, third.pid())
	}
	// No restart left: dead.
	third.kill(t)
	for i := range 2 {
		err := call(t, ctx, a, "Get").Get(ctx, nil)
		if !errors.Is(err, ErrActorDied) {
			t.Fatalf("call %d after the third kill = %v, want ErrActorDied", i, err)
		}
	}
}

// TestRustWorker calls the Rust SDK's example worker
// (sdk-rust/examples/worker.rs: `cargo build --release -p ember --example
// worker`), $EMBER_RUST_WORKER or target/release/examples/worker. Without
// it the test is skipped, except under CI=true.
func TestRustWorker(t *testing.T) {
	path := os.Getenv("EMBER_RUST_WORKER")
	if path == "" {
		path = filepath.Join(testnode.RepoRoot(), "target", "release", "examples", "worker")
	}
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("no Rust example worker at %s (cargo build --release -p ember --example worker)", path)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c := newClient(t)
	ctx := testContext(t, 180*time.Second)
	startServing(t, path)

	ref, err := c.Call(ctx, Function{Language: Rust, Name: "rust.add"}, 40, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, ref); got != 42 {
		t.Fatalf("rust.add(40, 2) = %d", got)
	}
	ref, err = c.Call(ctx, Function{Language: Rust, Name: "rust.word_count"}, "the cat saw the other cat and the dog")
	if err != nil {
		t.Fatal(err)
	}
	var counts map[string]int
	if err := ref.Get(ctx, &counts); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"the": 3, "cat": 2, "saw": 1, "other": 1, "and": 1, "dog": 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("rust.word_count = %v, want %v", counts, want)
	}
	ref, err = c.Call(ctx, Function{Language: Rust, Name: "rust.fail"}, "rusty trouble")
	if err != nil {
		t.Fatal(err)
	}
	var te *TaskError
	if err := ref.Get(ctx, nil); !errors.As(err, &te) || te.Kind != KindTaskFailed || te.Language != Rust ||
		!strings.Contains(te.Message, "rusty trouble") {
		t.Fatalf("rust.fail = %v (%+v)", err, te)
	}

	a, err := c.CreateActor(ctx, Class{Language: Rust, Name: "rust.Counter"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "incr", 5)); got != 15 {
		t.Fatalf("rust.Counter(10).incr(5) = %d", got)
	}
	var refs []ObjectRef
	for range 50 {
		refs = append(refs, call(t, ctx, a, "incr", 1))
	}
	for i, r := range refs {
		if got := getInt(t, ctx, r); got != int64(16+i) {
			t.Fatalf("incr %d = %d, want %d", i, got, 16+i)
		}
	}
	if err := call(t, ctx, a, "fail", "counter trouble").Get(ctx, nil); !errors.As(err, &te) ||
		te.Language != Rust || !strings.Contains(te.Message, "counter trouble") {
		t.Fatalf("rust.Counter.fail = %v", err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "get")); got != 65 {
		t.Fatalf("get after fail = %d", got)
	}
	if err := call(t, ctx, a, "no_such_method").Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "no_such_method") {
		t.Fatalf("an unknown method of the Rust actor = %v, want an error naming it", err)
	}
	if err := c.KillActor(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	if err := call(t, ctx, a, "get").Get(ctx, nil); !errors.Is(err, ErrActorDied) {
		t.Fatalf("a call after KillActor = %v, want ErrActorDied", err)
	}
}
