package core

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/ember-run/ember/sdk-go/internal/pb"
)

// mapArena maps the node's whole shared-memory arena (read-write: this
// client writes new objects into blocks the node gives it) once.
func (r *Runtime) mapArena() ([]byte, error) {
	r.arenaOnce.Do(func() {
		if !r.Local() {
			r.arenaErr = errors.New("ember: the node's shared memory is not reachable over a remote connection")
			return
		}
		f, err := os.OpenFile(r.Hello.ShmPath, os.O_RDWR, 0)
		if err != nil {
			r.arenaErr = fmt.Errorf("ember: open the node's arena: %w", err)
			return
		}
		defer f.Close()
		size := int(r.Hello.ShmSize)
		if st, err := f.Stat(); err == nil && st.Size() < int64(size) {
			size = int(st.Size())
		}
		if size <= 0 {
			r.arenaErr = fmt.Errorf("ember: the node's arena %s is empty", r.Hello.ShmPath)
			return
		}
		data, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if err != nil {
			r.arenaErr = fmt.Errorf("ember: map the node's arena: %w", err)
			return
		}
		r.arena = data
	})
	return r.arena, r.arenaErr
}

// useArena maps the arena and counts a user of it; release with doneArena.
func (r *Runtime) useArena() ([]byte, error) {
	arena, err := r.mapArena()
	if err != nil {
		return nil, err
	}
	r.arenaMu.Lock()
	defer r.arenaMu.Unlock()
	if r.arenaClosed {
		return nil, ErrClosed
	}
	r.arenaUsers++
	return arena, nil
}

func (r *Runtime) doneArena() {
	r.arenaMu.Lock()
	defer r.arenaMu.Unlock()
	r.arenaUsers--
	if r.arenaUsers == 0 && r.arenaClosed && r.arena != nil {
		unmapArena(r.arena)
	}
}

func unmapArena(b []byte) { _ = syscall.Munmap(b) }

// ReadGrant returns the bytes at a location the node granted for id (a
// task argument); done gives the grant back. An error gives it back too.
func (r *Runtime) ReadGrant(id ObjectID, loc *pb.ShmLocation) (data []byte, done func(), err error) {
	arena, err := r.useArena()
	if err != nil {
		r.queueRefChange(nil, &id)
		return nil, nil, err
	}
	end := loc.Offset + loc.Size
	if end > uint64(len(arena)) || end < loc.Offset {
		r.doneArena()
		r.queueRefChange(nil, &id)
		return nil, nil, fmt.Errorf("ember: a granted location [%d, %d) lies outside the arena", loc.Offset, end)
	}
	r.shmGets.Add(1)
	return arena[loc.Offset:end:end], func() {
		r.doneArena()
		r.queueRefChange(nil, &id)
	}, nil
}

// CountShmReturn counts a task return written into shared memory.
func (r *Runtime) CountShmReturn() { r.shmReturns.Add(1) }
