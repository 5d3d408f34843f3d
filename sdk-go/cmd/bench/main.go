// Command bench measures Go-to-Go calls through a real ember node: a Go
// client calls a Go function that a Go worker process serves.
//
//	go run ./cmd/bench                 # starts its own node and worker
//	go run ./cmd/bench -attach         # uses the running node (EMBER_ADDRESS / session)
//
// It prints sync round trips per second (call, then get, one at a time)
// and async calls per second (N calls, then get all), each the best of
// -rounds runs.
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
	if err := run(*attach, *inProcess, *syncN, *asyncN, *rounds, *concurrency, *cpuProfile); err != nil {
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

func run(attach, inProcess bool, syncN, asyncN, rounds, concurrency int, cpuProfile string) error {
	ctx := context.Background()
	if !attach {
		node, err := testnode.Start(testnode.Options{NumCPUs: 2})
		if err != nil {
			return err
		}
		defer node.Stop()
		os.Setenv("EMBER_TMPDIR", node.Root)
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

	// Warm up.
	if _, err := asyncRound(ctx, c, fn, 2000); err != nil {
		return err
	}
	best := 0.0
	for r := 0; r < rounds; r++ {
		start := time.Now()
		for i := 0; i < syncN; i++ {
			ref, err := c.Call(ctx, fn, i, 1)
			if err != nil {
				return err
			}
			var out int
			if err := ref.Get(ctx, &out); err != nil {
				return err
			}
			if out != i+1 {
				return fmt.Errorf("bench.add(%d, 1) = %d", i, out)
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
			return err
		}
		fmt.Printf("  async round %d: %8.0f calls/s (%d calls, then get all)\n", r+1, rate, asyncN)
		best = max(best, rate)
	}
	fmt.Printf("Go->Go sync:  %.0f round trips/s (target >= 10,000)\n", syncBest)
	fmt.Printf("Go->Go async: %.0f calls/s (target >= 50,000)\n", best)
	return nil
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
			return 0, fmt.Errorf("bench.add(%d, 1) = %d", i, out)
		}
		ref.Release()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
