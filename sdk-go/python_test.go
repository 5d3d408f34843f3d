package ember

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/sdk-go/internal/testnode"
)

// The Python side of TestPythonInterop: it exports two functions and an
// actor class by name, calls two Go functions and a Go actor this test
// process serves, prints the results as one JSON line, says READY and
// stays connected until stdin closes.
const pythonScript = `
import json, sys
import ember
from ember import cross_language

ember.init(address=sys.argv[1])

def describe(number, items, table):
    return {"sum": number + sum(items), "keys": sorted(table), "blob": table["blob"], "none": None}

def fail(msg):
    raise ValueError("python says: " + msg)

@ember.remote
class Counter:
    def __init__(self, start):
        self.n = start

    def incr(self, by):
        self.n += by
        return self.n

    def get(self):
        return self.n

    def fail(self, msg):
        raise ValueError("python actor says: " + msg)

cross_language.export(describe, "gotest.describe")
cross_language.export(fail, "gotest.fail")
cross_language.export(Counter, "gotest.Counter")

add = cross_language.go_function("test.add")
greet = cross_language.go_function("test.greet")
out = {
    "add": ember.get(add.remote(2, 3), timeout=60),
    "greet": ember.get(greet.remote({"name": "Guido", "age": 69, "tags": ["py"]}, "Hallo"), timeout=60),
}
try:
    ember.get(cross_language.go_function("test.fail").remote("from python"), timeout=60)
    out["fail"] = None
except Exception as e:
    out["fail"] = type(e).__name__ + ": " + str(e)
counter = cross_language.go_actor_class("test.Counter").remote(5)
out["actor"] = ember.get([counter.incr.remote(1), counter.Incr.remote(2), counter.get.remote()], timeout=60)
# A round trip after the exports: the node has taken them.
ember.nodes()
print(json.dumps(out), flush=True)
print("READY", flush=True)
sys.stdin.read()
`

func TestPythonInterop(t *testing.T) {
	if os.Getenv("EMBER_GO_TEST_NO_PYTHON") != "" {
		t.Skip("EMBER_GO_TEST_NO_PYTHON is set")
	}
	needWorker(t)
	python := testnode.Python()
	if python == "" {
		t.Fatal("no Python with the ember SDK: run `make venv` (or set EMBER_PYTHON, or EMBER_GO_TEST_NO_PYTHON=1 to skip)")
	}
	cmd := exec.Command(python, "-c", pythonScript, node.Info.Address)
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
	lines := make(chan string, 2)
	go func() {
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- strings.TrimSpace(line)
		}
	}()
	var got []string
	timeout := time.After(120 * time.Second)
	for len(got) < 2 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the Python script ended early; output: %q", got)
			}
			got = append(got, line)
		case <-timeout:
			t.Fatalf("the Python script did not finish within 120 s; output: %q", got)
		}
	}
	if got[1] != "READY" {
		t.Fatalf("Python printed %q", got)
	}

	// Python called Go.
	var fromPython struct {
		Add   int            `json:"add"`
		Greet map[string]any `json:"greet"`
		Fail  string         `json:"fail"`
		Actor []int          `json:"actor"`
	}
	if err := json.Unmarshal([]byte(got[0]), &fromPython); err != nil {
		t.Fatalf("Python's results %q: %v", got[0], err)
	}
	if fromPython.Add != 5 || fromPython.Greet["text"] != "Hallo, Guido (py)" || fromPython.Greet["next_age"] != float64(70) {
		t.Fatalf("Python's calls of Go functions: %+v", fromPython)
	}
	if !strings.Contains(fromPython.Fail, "wrapped: from python") {
		t.Fatalf("Python saw the Go error as %q", fromPython.Fail)
	}
	if fmt.Sprint(fromPython.Actor) != "[6 8 8]" {
		t.Fatalf("Python's calls of a Go actor: %v, want [6 8 8]", fromPython.Actor)
	}

	// Go calls Python.
	c := newClient(t)
	ctx := testContext(t, 120*time.Second)
	type described struct {
		Sum  float64  `msgpack:"sum"`
		Keys []string `msgpack:"keys"`
		Blob []byte   `msgpack:"blob"`
		None any      `msgpack:"none"`
	}
	ref, err := c.Call(ctx, Function{Language: Python, Name: "gotest.describe"}, 1.5, []int{1, 2, 3},
		map[string]any{"blob": []byte{0, 1}, "k": true})
	if err != nil {
		t.Fatal(err)
	}
	var d described
	if err := ref.Get(ctx, &d); err != nil {
		t.Fatalf("gotest.describe: %v", err)
	}
	if d.Sum != 7.5 || strings.Join(d.Keys, ",") != "blob,k" || string(d.Blob) != "\x00\x01" || d.None != nil {
		t.Fatalf("gotest.describe = %+v", d)
	}
	// A Python exception is a *TaskError with the Python type and message.
	ref, err = c.Call(ctx, Function{Language: Python, Name: "gotest.fail"}, "boom")
	if err != nil {
		t.Fatal(err)
	}
	err = ref.Get(ctx, nil)
	var te *TaskError
	if !errors.As(err, &te) {
		t.Fatalf("gotest.fail: %v (%T), want a *TaskError", err, err)
	}
	if te.Kind != KindTaskFailed || te.Language != Python || te.TypeName != "ValueError" ||
		!strings.Contains(te.Message, "python says: boom") || !strings.Contains(te.Traceback, "in fail") {
		t.Fatalf("gotest.fail error = %+v\ntraceback: %q", te, te.Traceback)
	}
	// A Python name nobody exported fails fast.
	ref, err = c.Call(ctx, Function{Language: Python, Name: "gotest.nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Get(ctx, nil); !errors.Is(err, ErrUnknownFunction) || !strings.Contains(err.Error(), "gotest.nobody") {
		t.Fatalf("unexported Python name: %v", err)
	}

	// Go creates and calls a Python actor.
	a, err := c.CreateActor(ctx, Class{Language: Python, Name: "gotest.Counter"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var refs []ObjectRef
	for range 20 {
		refs = append(refs, call(t, ctx, a, "incr", 1))
	}
	for i, r := range refs {
		if got := getInt(t, ctx, r); got != int64(11+i) {
			t.Fatalf("Python actor: incr %d = %d, want %d", i, got, 11+i)
		}
	}
	err = call(t, ctx, a, "fail", "boom").Get(ctx, nil)
	if !errors.As(err, &te) || te.Kind != KindTaskFailed || te.Language != Python || te.TypeName != "ValueError" ||
		!strings.Contains(te.Message, "python actor says: boom") {
		t.Fatalf("Python actor fail = %v", err)
	}
	if got := getInt(t, ctx, call(t, ctx, a, "get")); got != 30 {
		t.Fatalf("Python actor get = %d, want 30", got)
	}
	// Named, found from another client.
	named, err := c.CreateActorWith(ctx, Class{Language: Python, Name: "gotest.Counter"}, ActorOptions{Name: "py-counter", Namespace: "gotest"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	found, err := newClient(t).GetActor(ctx, "py-counter", "gotest")
	if err != nil {
		t.Fatal(err)
	}
	if found.ID() != named.ID() || found.Class() != (Class{Language: Python, Name: "gotest.Counter"}) {
		t.Fatalf("GetActor of the Python actor = %v, want %v", found, named)
	}
	if got := getInt(t, ctx, call(t, ctx, found, "incr", 1)); got != 2 {
		t.Fatalf("the Python actor through GetActor: incr = %d", got)
	}
	if err := c.KillActor(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	if err := call(t, ctx, a, "get").Get(ctx, nil); !errors.Is(err, ErrActorDied) {
		t.Fatalf("the Python actor after KillActor: %v, want ErrActorDied", err)
	}
	// A class nobody exported: its calls fail naming it.
	ghost, err := c.CreateActor(ctx, Class{Language: Python, Name: "gotest.Nobody"})
	if err == nil {
		err = call(t, ctx, ghost, "get").Get(ctx, nil)
	}
	if err == nil || !strings.Contains(err.Error(), "gotest.Nobody") {
		t.Fatalf("an unexported Python class: %v, want an error naming it", err)
	}
}
