package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// unixSocket is a connected Unix stream socket (Linux) kept off Go's
// netpoller on purpose. The netpoller registers every net.Conn for
// EPOLLIN|EPOLLOUT, edge-triggered, and a Unix stream socket signals
// writability to its owner each time the peer reads a message this end
// sent: with a net.Conn every frame the client sends wakes the process's
// netpoller for nothing when the node reads it, and a wake-up on another
// CPU is the dearest step of a local round trip. Here the socket is in
// blocking mode: a read waits in poll(POLLIN), whose wait ignores
// writability, on a thread of its own (the goroutine is in a syscall), and
// a write blocks its thread while the socket is full. Each connection thus
// holds a thread while its Recv waits.
type unixSocket struct {
	fd   int
	addr *net.UnixAddr // the node's socket, for error messages
	mu   sync.Mutex
	// users counts the reads and writes inside fd. The descriptor is closed
	// once Close was called and none is, so that its number cannot be
	// reused by another file under a poll, read or write still running.
	users int
	// closed is set by Close: operations then fail with net.ErrClosed, and
	// whoever sees users reach 0 closes fd.
	closed bool
	// readable: waitReadable saw the socket readable, so the next read
	// reads at once (the reader's state: one reader at a time).
	readable bool
}

// dialUnixSocket connects to the Unix socket at path. ctx bounds the
// connect: it is immediate unless the node's listen backlog is full.
func dialUnixSocket(ctx context.Context, path string) (*unixSocket, error) {
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	dialErr := func(err error) error { return &net.OpError{Op: "dial", Net: "unix", Addr: addr, Err: err} }
	if err := ctx.Err(); err != nil {
		return nil, dialErr(err)
	}
	// Non-blocking for the connect only, so that a full backlog (EAGAIN)
	// can be retried under ctx rather than block without one.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, dialErr(os.NewSyscallError("socket", err))
	}
	sa := &unix.SockaddrUnix{Name: path}
	retry := time.Millisecond
	for {
		err = unix.Connect(fd, sa)
		if err == nil || err == unix.EISCONN {
			break
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			unix.Close(fd)
			return nil, dialErr(os.NewSyscallError("connect", err))
		}
		// The node's backlog is full: nothing to poll for, so try again
		// a little later.
		timer := time.NewTimer(retry)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			unix.Close(fd)
			return nil, dialErr(ctx.Err())
		}
		retry = min(2*retry, 50*time.Millisecond)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, dialErr(os.NewSyscallError("fcntl", err))
	}
	return &unixSocket{fd: fd, addr: addr}, nil
}

// acquire counts an operation in; false once the socket is closed.
func (s *unixSocket) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.users++
	return true
}

// release counts an operation out, closing fd if it was the last one
// after Close. It says whether Close was called (an error or end of
// stream after it is the close's doing).
func (s *unixSocket) release() (closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.closed && s.users == 0 {
		unix.Close(s.fd)
	}
	return s.closed
}

func (s *unixSocket) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "unix", Addr: s.addr, Err: err}
}

// Read waits until the socket is readable and reads what is there into
// p: io.EOF when the node closed the connection, net.ErrClosed after
// Close. One reader at a time.
func (s *unixSocket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !s.acquire() {
		return 0, s.opError("read", net.ErrClosed)
	}
	n, err := s.read(p)
	if closed := s.release(); closed && (n == 0 || err != nil) {
		return 0, s.opError("read", net.ErrClosed)
	}
	return n, err
}

func (s *unixSocket) read(p []byte) (int, error) {
	if s.readable {
		// waitReadable saw data (or the end): this read does not block
		// (on EINTR or EAGAIN, wait as usual below).
		s.readable = false
		if n, err := s.readNow(p); err != errRetry {
			return n, err
		}
	}
	// Yield first, so that the goroutines the last frame woke (a caller
	// waiting for its reply) run on this thread now. Otherwise they wait on
	// this thread's P while poll holds it, until a second thread, woken for
	// them, steals them: a second wake-up on the path of every round trip.
	runtime.Gosched()
	fds := [1]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds[:], -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return 0, s.opError("read", os.NewSyscallError("poll", err))
		}
		// Readable (data, end of stream or an error): this read does not
		// block, being the only one.
		n, err := s.readNow(p)
		if err == errRetry {
			continue
		}
		return n, err
	}
}

var errRetry = errors.New("retry")

// readNow reads from the socket, readable: errRetry on EINTR or EAGAIN.
func (s *unixSocket) readNow(p []byte) (int, error) {
	n, err := unix.Read(s.fd, p)
	switch {
	case err == unix.EINTR || err == unix.EAGAIN:
		return 0, errRetry
	case err != nil:
		return 0, s.opError("read", os.NewSyscallError("read", err))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// waitReadable waits in poll(POLLIN) until the socket or wake (a
// descriptor such as an eventfd; -1: none) is readable, from the calling
// goroutine, without the yield of read: true when the socket is (the next
// read then reads at once). The reader's call: one at a time.
func (s *unixSocket) waitReadable(wake int) (bool, error) {
	if !s.acquire() {
		return false, s.opError("read", net.ErrClosed)
	}
	fds := [2]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
	n := 2
	if wake < 0 {
		n = 1
	}
	var err error
	for {
		if _, err = unix.Poll(fds[:n], -1); err != unix.EINTR {
			break
		}
	}
	closed := s.release()
	switch {
	case closed:
		return false, s.opError("read", net.ErrClosed)
	case err != nil:
		return false, s.opError("read", os.NewSyscallError("poll", err))
	case fds[0].Revents != 0:
		s.readable = true
		return true, nil
	}
	return false, nil
}

// writeAll writes b whole, blocking while the socket is full. One writer
// at a time.
func (s *unixSocket) writeAll(b []byte) error {
	if !s.acquire() {
		return s.opError("write", net.ErrClosed)
	}
	var err error
	for len(b) > 0 {
		var n int
		// MSG_NOSIGNAL: a node gone away is EPIPE, not SIGPIPE.
		n, err = unix.SendmsgN(s.fd, b, nil, nil, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			err = nil
			continue
		}
		if err != nil {
			err = s.opError("write", os.NewSyscallError("sendmsg", err))
			break
		}
		b = b[n:]
	}
	if closed := s.release(); closed && err != nil {
		return s.opError("write", net.ErrClosed)
	}
	return err
}

// Close shuts the socket down both ways, which wakes a read waiting in
// poll (end of stream) and a write blocked on a full socket (EPIPE), and
// closes fd now or when the last of them leaves. Safe from any goroutine,
// any number of times.
func (s *unixSocket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	_ = unix.Shutdown(s.fd, unix.SHUT_RDWR)
	if s.users == 0 {
		if err := unix.Close(s.fd); err != nil {
			return s.opError("close", os.NewSyscallError("close", err))
		}
	}
	return nil
}

var _ io.Reader = (*unixSocket)(nil)
