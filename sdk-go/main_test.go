package ember

// Integration tests run against a real node that TestMain starts
// (internal/testnode: `ember start --head --block --port 0 ...` in a fresh
// EMBER_TMPDIR, stopped at the end). Go functions are served by a worker in
// this test process (StartWorker) and, for the crash test, by a second
// worker process: this test binary re-executed with EMBER_GO_TEST_SERVE
// set, which makes TestMain serve instead of testing.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/sdk-go/internal/testnode"
)

const (
	envServe  = "EMBER_GO_TEST_SERVE"  // names to serve, comma-separated: child mode
	envMarker = "EMBER_GO_TEST_MARKER" // the child writes its pid here when test.crash starts
)

var (
	node       *testnode.Node
	workerOnce sync.Once
	mainWorker *Worker
	workerErr  error
)

type Person struct {
	Name string   `msgpack:"name"`
	Age  int      `msgpack:"age"`
	Tags []string `msgpack:"tags,omitempty"`
}

type Greeting struct {
	Text    string `msgpack:"text"`
	NextAge int    `msgpack:"next_age"`
}

func init() {
	Register("test.add", func(a, b int) int { return a + b })
	Register("test.greet", func(p Person, greeting string) (Greeting, error) {
		return Greeting{Text: fmt.Sprintf("%s, %s (%s)", greeting, p.Name, strings.Join(p.Tags, "+")), NextAge: p.Age + 1}, nil
	})
	Register("test.echo", func(v any) any { return v })
	Register("test.fail", func(msg string) (int, error) { return 0, fmt.Errorf("wrapped: %w", errors.New(msg)) })
	Register("test.panic", func() int { panic("the function panicked") })
	Register("test.len", func(b []byte) int { return len(b) })
	Register("test.make_bytes", func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i % 251)
		}
		return b
	})
	Register("test.sleep", func(ms int) int {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms
	})
	Register("test.sum", func(xs ...float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s
	})
	Register("test.nested", func(ctx context.Context, x int) (int, error) {
		c := ClientFromContext(ctx)
		if c == nil {
			return 0, errors.New("no client in the task's context")
		}
		ref, err := c.Call(ctx, Function{Language: Go, Name: "test.add"}, x, 100)
		if err != nil {
			return 0, err
		}
		var out int
		err = ref.Get(ctx, &out)
		return out, err
	})
	Register("test.pid", func() int { return os.Getpid() })
	// In a child worker it blocks (after saying it started); in the test
	// process it answers at once with its pid.
	Register("test.crash", func() int {
		if marker := os.Getenv(envMarker); marker != "" {
			_ = os.WriteFile(marker, []byte(fmt.Sprint(os.Getpid())), 0o600)
			time.Sleep(10 * time.Minute)
		}
		return os.Getpid()
	})
}

func TestMain(m *testing.M) {
	if names := os.Getenv(envServe); names != "" {
		os.Exit(serveChild(strings.Split(names, ",")))
	}
	if os.Getenv("EMBER_GO_TEST_NO_NODE") == "" {
		var err error
		node, err = testnode.Start(testnode.Options{NumCPUs: 2, ObjectStoreMemory: 512 << 20})
		if err != nil {
			fmt.Fprintln(os.Stderr, "cannot start an ember node for the tests:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	if mainWorker != nil {
		mainWorker.Stop()
	}
	if node != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- node log (tail) ---\n%s\n", node.Log())
		}
		node.Stop()
	}
	os.Exit(code)
}

// serveChild is a worker process: it serves names until it is killed.
func serveChild(names []string) int {
	ctx := context.Background()
	w, err := StartWorker(ctx, ServeOptions{Names: names, Concurrency: 4})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child worker:", err)
		return 1
	}
	fmt.Println("READY")
	<-w.Done()
	if err := w.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "child worker stopped:", err)
		return 1
	}
	return 0
}

func testOptions(t testing.TB) Options {
	t.Helper()
	if node == nil {
		t.Skip("EMBER_GO_TEST_NO_NODE is set: no node")
	}
	return Options{SessionRoot: node.Root}
}

func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t testing.TB) *Client {
	t.Helper()
	c, err := Connect(testContext(t, 30*time.Second), testOptions(t))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// needWorker starts the in-process worker serving every test function
// except test.crash (served only by the crash test's workers), and every
// test actor class.
func needWorker(t testing.TB) {
	t.Helper()
	opts := testOptions(t)
	workerOnce.Do(func() {
		var names []string
		for _, n := range Registered() {
			if n != "test.crash" {
				names = append(names, n)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		mainWorker, workerErr = StartWorker(ctx, ServeOptions{Options: opts, Names: names, ActorClasses: RegisteredActors(), Concurrency: 8})
	})
	if workerErr != nil {
		t.Fatalf("StartWorker: %v", workerErr)
	}
}

// startChildWorker runs this test binary as a worker process serving names.
func startChildWorker(t *testing.T, names []string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envServe+"="+strings.Join(names, ","), "EMBER_TMPDIR="+node.Root)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "READY" {
			err = fmt.Errorf("unexpected first line %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("child worker did not start: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("child worker not ready within 60 s")
	}
	return cmd
}
