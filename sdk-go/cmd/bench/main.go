// Command bench measures Go-to-Go calls through a real ember node: a Go
// client calls a Go function that a Go worker process serves.
//
//	go run ./cmd/bench                 # starts its own node and worker
//	go run ./cmd/bench -attach         # uses the running node (EMBER_ADDRESS / session)
//
// It prints sync round trips per second (call, then get, one at a time)
// and async calls per second (N calls, then get all), each the best of
// -rounds runs. Then the same for a Python function exported by name
// (bench.py_add, run by the node's Python worker pool; -python=false skips
// it), with -py-sync and -py-async calls.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/ember-run/ember/sdk-go"
	"github.com/ember-run/ember/sdk-go/internal/testnode"
)

func main() {
	var (
		serve       = flag.Bool("serve", false, "run as the worker process (internal)")
		attach      = flag.Bool("attach", false, "use the running node (EMBER_ADDRESS, EMBER_TMPDIR) instead of starting one")
		syncN       = flag.Int("sync", 5000, "sync round trips per round")
		asyncN      = flag.Int("async", 50000, "async calls per round")
		rounds      = flag.Int("rounds", 3, "rounds of each measure (the best is reported)")
		concurrency = flag.Int("concurrency", 256, "the worker's concurrency (tasks in flight; ServeOptions default is runtime.NumCPU())")
		inProcess   = flag.Bool("in-process", false, "serve in this process instead of a worker process")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the client (and, with -serve, the worker) here")
		python      = flag.Bool("python", true, "also measure calls of a Python function (needs the venv: EMBER_PYTHON or ../.venv)")
		pySyncN     = flag.Int("py-sync", 2000, "sync round trips per round to the Python function")
		pyAsyncN    = flag.Int("py-async", 10000, "async calls per round to the Python function")
	)
	flag.Parse()
	ember.Register("bench.add", func(a, b int) int { return a + b })
	if *cpuProfile != "" {
		path := *cpuProfile
		if *serve {
			path += ".worker"
		}
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *serve {
		if err := serveMain(*concurrency); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
		}
		return
	}
	py := pyOptions{enabled: *python, syncN: *pySyncN, asyncN: *pyAsyncN}
	if err := run(*attach, *inProcess, *syncN, *asyncN, *rounds, *concurrency, *cpuProfile, py); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func serveMain(concurrency int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := ember.StartWorker(ctx, ember.ServeOptions{Concurrency: concurrency})
	if err != nil {
		return err
	}
	fmt.Println("READY")
	// Until the parent closes stdin.
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString(0)
		w.Stop()
	}()
	<-w.Done()
	return nil
}

type pyOptions struct {
	enabled       bool
	syncN, asyncN int
}

func run(attach, inProcess bool, syncN, asyncN, rounds, concurrency int, cpuProfile string, py pyOptions) error {
	ctx := context.Background()
	address := os.Getenv("EMBER_ADDRESS")
	if !attach {
		node, err := testnode.Start(testnode.Options{NumCPUs: 2})
		if err != nil {
			return err
		}
		defer node.Stop()
		os.Setenv("EMBER_TMPDIR", node.Root)
		address = node.Info.Address
		fmt.Printf("node: %s (started by the benchmark)\n", node.Info.Address)
	}
	if inProcess {
		w, err := ember.StartWorker(ctx, ember.ServeOptions{Concurrency: concurrency})
		if err != nil {
			return err
		}
		defer w.Stop()
	} else {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		args := []string{"-serve", fmt.Sprintf("-concurrency=%d", concurrency)}
		if cpuProfile != "" {
			args = append(args, "-cpuprofile="+cpuProfile)
		}
		cmd := exec.Command(self, args...)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() {
			stdin.Close()
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
			}
		}()
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "READY" {
			return fmt.Errorf("the worker process did not start: %q, %v", line, err)
		}
	}
	c, err := ember.Connect(ctx, ember.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	fn := ember.Function{Language: ember.Go, Name: "bench.add"}
	where := "a worker process"
	if inProcess {
		where = "a worker in this process"
	}
	fmt.Printf("Go client -> Go function (bench.add) served by %s, concurrency %d, GOMAXPROCS %d\n",
		where, concurrency, runtime.GOMAXPROCS(0))

	syncBest, asyncBest, err := measure(ctx, c, fn, syncN, asyncN, rounds)
	if err != nil {
		return err
	}
	fmt.Printf("Go->Go sync:  %.0f round trips/s (target >= 10,000)\n", syncBest)
	fmt.Printf("Go->Go async: %.0f calls/s (target >= 50,000)\n", asyncBest)
	if !py.enabled {
		return nil
	}
	if err := exportPython(address); err != nil {
		return err
	}
	pyFn := ember.Function{Language: ember.Python, Name: "bench.py_add"}
	fmt.Println("Go client -> Python function (bench.py_add) run by the node's Python workers")
	syncBest, asyncBest, err = measure(ctx, c, pyFn, py.syncN, py.asyncN, rounds)
	if err != nil {
		return err
	}
	fmt.Printf("Go->Python sync:  %.0f round trips/s\n", syncBest)
	fmt.Printf("Go->Python async: %.0f calls/s\n", asyncBest)
	return nil
}

// exportPython runs a Python program that exports bench.py_add on the
// node at address (the export outlives the program).
func exportPython(address string) error {
	python := testnode.Python()
	if python == "" {
		return fmt.Errorf("no Python with the ember SDK for the Go->Python figures (run `make venv`, set EMBER_PYTHON, or pass -python=false)")
	}
	script := `import sys, ember
from ember import cross_language
ember.init(address=sys.argv[1])
def add(a, b):
    return a + b
cross_language.export(add, "bench.py_add")
ember.shutdown()
`
	out, err := exec.Command(python, "-c", script, address).CombinedOutput()
	if err != nil {
		return fmt.Errorf("exporting the Python function: %v: %s", err, out)
	}
	return nil
}

// measure reports the best sync and async rates of calling fn(i, 1) over
// rounds, after a warm-up.
func measure(ctx context.Context, c *ember.Client, fn ember.Function, syncN, asyncN, rounds int) (float64, float64, error) {
	if _, err := asyncRound(ctx, c, fn, min(2000, asyncN)); err != nil {
		return 0, 0, err
	}
	best := 0.0
	for r := 0; r < rounds; r++ {
		start := time.Now()
		for i := 0; i < syncN; i++ {
			ref, err := c.Call(ctx, fn, i, 1)
			if err != nil {
				return 0, 0, err
			}
			var out int
			if err := ref.Get(ctx, &out); err != nil {
				return 0, 0, err
			}
			if out != i+1 {
				return 0, 0, fmt.Errorf("%s(%d, 1) = %d", fn.Name, i, out)
			}
			ref.Release()
		}
		rate := float64(syncN) / time.Since(start).Seconds()
		fmt.Printf("  sync  round %d: %8.0f round trips/s (%.1f µs each)\n", r+1, rate, 1e6/rate)
		best = max(best, rate)
	}
	syncBest := best
	best = 0
	for r := 0; r < rounds; r++ {
		rate, err := asyncRound(ctx, c, fn, asyncN)
		if err != nil {
			return 0, 0, err
		}
		fmt.Printf("  async round %d: %8.0f calls/s (%d calls, then get all)\n", r+1, rate, asyncN)
		best = max(best, rate)
	}
	return syncBest, best, nil
}

func asyncRound(ctx context.Context, c *ember.Client, fn ember.Function, n int) (float64, error) {
	refs := make([]ember.ObjectRef, n)
	start := time.Now()
	for i := range refs {
		ref, err := c.Call(ctx, fn, i, 1)
		if err != nil {
			return 0, err
		}
		refs[i] = ref
	}
	for i, ref := range refs {
		var out int
		if err := ref.Get(ctx, &out); err != nil {
			return 0, err
		}
		if out != i+1 {
			return 0, fmt.Errorf("%s(%d, 1) = %d", fn.Name, i, out)
		}
		ref.Release()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
