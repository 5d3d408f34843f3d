// Package testnode starts a real ember node for tests and benchmarks:
//
//	ember start --head --block --port 0 --num-cpus N --ready-file F --exit-with-stdin
//
// with EMBER_TMPDIR a fresh directory, and stops it (SIGTERM, then
// SIGKILL). The binary is $EMBER_BIN, else .venv/bin/ember of the
// repository (made by `make build`), else target/release/ember.
package testnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ember-run/ember/sdk-go/internal/session"
)

// Options of a node.
type Options struct {
	NumCPUs int
	// ObjectStoreMemory in bytes (default 512 MiB).
	ObjectStoreMemory int64
	// Extra arguments after the defaults.
	Args []string
	// Log is where the node's output goes (default: a file in the temp dir).
	Log io.Writer
	// Env are extra environment variables (KEY=VALUE).
	Env []string
	// Join makes the node join that head's cluster instead of being a head.
	Join *Node
	// NodeIP is the address the node listens on (e.g. 127.0.0.2; default
	// 127.0.0.1).
	NodeIP string
}

// Node is a running node.
type Node struct {
	Info    *session.Info
	Root    string // its EMBER_TMPDIR (the session root)
	LogPath string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	tmp     string
	exited  chan struct{}
}

// RepoRoot is the repository root (the directory above sdk-go).
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "sdk-go", "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Binary finds the ember binary.
func Binary() (string, error) {
	if env := os.Getenv("EMBER_BIN"); env != "" {
		return env, nil
	}
	root := RepoRoot()
	for _, candidate := range []string{
		filepath.Join(root, ".venv", "bin", "ember"),
		filepath.Join(root, "target", "release", "ember"),
	} {
		if st, err := os.Stat(candidate); err == nil && st.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	if p, err := exec.LookPath("ember"); err == nil {
		return p, nil
	}
	return "", errors.New("the ember binary was not found: run `make build` or set EMBER_BIN")
}

// Python is the interpreter for the node's Python workers: $EMBER_PYTHON,
// else the repository's .venv/bin/python.
func Python() string {
	if env := os.Getenv("EMBER_PYTHON"); env != "" {
		return env
	}
	p := filepath.Join(RepoRoot(), ".venv", "bin", "python")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// Start runs a head node and waits until it is ready.
func Start(opts Options) (*Node, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "ember-go-test-")
	if err != nil {
		return nil, err
	}
	n := &Node{Root: filepath.Join(tmp, "sessions"), tmp: tmp, exited: make(chan struct{})}
	ready := filepath.Join(tmp, "ready.json")
	cpus := opts.NumCPUs
	if cpus <= 0 {
		cpus = 2
	}
	mem := opts.ObjectStoreMemory
	if mem <= 0 {
		mem = 512 << 20
	}
	role := []string{"--head"}
	if opts.Join != nil {
		role = []string{"--address", opts.Join.Info.Address, "--token", opts.Join.Info.Token}
	}
	if opts.NodeIP != "" {
		role = append(role, "--node-ip", opts.NodeIP)
	}
	args := append([]string{"start"}, role...)
	args = append(args, "--block", "--port", "0", "--exit-with-stdin",
		"--num-cpus", strconv.Itoa(cpus), "--num-gpus", "0",
		"--object-store-memory", strconv.FormatInt(mem, 10),
		"--ready-file", ready)
	if py := Python(); py != "" {
		args = append(args, "--python", py)
	}
	args = append(args, opts.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "EMBER_TMPDIR="+n.Root, "NO_COLOR=1", "RUST_LIB_BACKTRACE=0")
	cmd.Env = append(cmd.Env, opts.Env...)
	if opts.Log != nil {
		cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
	} else {
		n.LogPath = filepath.Join(tmp, "node.log")
		f, err := os.Create(n.LogPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	n.stdin = stdin
	if err := cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	n.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(n.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if data, err := os.ReadFile(ready); err == nil && len(data) > 0 {
			var info session.Info
			if json.Unmarshal(data, &info) == nil && info.Socket != "" {
				n.Info = &info
				return n, nil
			}
		}
		select {
		case <-n.exited:
			log := n.Log()
			n.Stop()
			return nil, fmt.Errorf("the node exited before it was ready:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log := n.Log()
			n.Stop()
			return nil, fmt.Errorf("the node was not ready within 60 s:\n%s", log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Log returns the tail of the node's log (when it logs to a file).
func (n *Node) Log() string {
	if n.LogPath == "" {
		return ""
	}
	data, _ := os.ReadFile(n.LogPath)
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	return string(data)
}

// Kill ends the node with SIGKILL, as a machine failure would; Stop still
// removes its files.
func (n *Node) Kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// Stop ends the node: SIGTERM, SIGKILL after 10 s; then removes its files.
func (n *Node) Stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
	}
	if n.stdin != nil {
		n.stdin.Close()
	}
	if n.tmp != "" {
		os.RemoveAll(n.tmp)
	}
}
