// Package session finds a running ember node: its session file under the
// session root, and whether the node's process is alive.
//
// Layout (server/src/session.rs): `<root>/session_<millis>_<pid>/session.json`
// holds {address, socket, token, session_dir, pid, node_id, shm_path};
// root is $EMBER_TMPDIR, else /tmp/ember-<uid>.
package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Info is the contents of a session.json.
type Info struct {
	Address    string `json:"address"`
	Socket     string `json:"socket"`
	Token      string `json:"token"`
	SessionDir string `json:"session_dir"`
	PID        int    `json:"pid"`
	NodeID     string `json:"node_id"`
	ShmPath    string `json:"shm_path"`
}

// Root is the session root: explicit if given, else $EMBER_TMPDIR, else
// /tmp/ember-<uid>.
func Root(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if env := os.Getenv("EMBER_TMPDIR"); env != "" {
		return env
	}
	return filepath.Join(os.TempDir(), "ember-"+strconv.Itoa(os.Getuid()))
}

// Read parses one session file.
func Read(path string) (*Info, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("session file %s: %w", path, err)
	}
	return &info, nil
}

// Live lists the sessions under root whose node process is alive, newest
// first.
func Live(root string) []*Info {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var found []*Info
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "session_") || name == "session_latest" {
			continue
		}
		info, err := Read(filepath.Join(root, name, "session.json"))
		if err != nil {
			continue // being written or removed
		}
		if Alive(info.PID) {
			found = append(found, info)
		}
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].SessionDir > found[j].SessionDir })
	return found
}

// ErrNoSession says that no live session was found.
var ErrNoSession = errors.New("no running ember node found")

// Find returns the newest live session under root, or the newest whose
// address is address when address is not empty.
func Find(root, address string) (*Info, error) {
	for _, info := range Live(root) {
		if address == "" || info.Address == address {
			return info, nil
		}
	}
	if address == "" {
		return nil, fmt.Errorf("%w under %s (start one with `ember start --head`, or set EMBER_ADDRESS and EMBER_TOKEN)", ErrNoSession, root)
	}
	return nil, fmt.Errorf("%w with address %s under %s", ErrNoSession, address, root)
}

// Alive says whether pid is a live process (a zombie is not).
func Alive(pid int) bool {
	if pid <= 1 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return true
	}
	fields := strings.Fields(s[i+1:])
	return len(fields) == 0 || fields[0] != "Z"
}
