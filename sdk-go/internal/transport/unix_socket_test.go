package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/ember-run/ember/sdk-go/internal/pb"
)

// bigFrameBytes is well over a Unix socket's buffer (about 200 KiB), so
// such a frame takes many reads and writes each way.
const bigFrameBytes = 8 << 20

// fakeNode listens on a Unix socket in a temporary directory and hands
// out the server end of each connection: the node's side of the framing.
type fakeNode struct {
	path     string
	listener net.Listener
}

func startFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &fakeNode{path: path, listener: l}
}

// dial connects a client and returns it with the node's end.
func (n *fakeNode) dial(t *testing.T) (*Unix, net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := n.listener.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	u, err := DialUnix(context.Background(), n.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close() })
	return u, server
}

func readClientFrame(r io.Reader) (*pb.ClientMessage, error) {
	var header [4]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.LittleEndian.Uint32(header[:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	msg := &pb.ClientMessage{}
	return msg, proto.Unmarshal(body, msg)
}

func writeNodeFrame(w io.Writer, msg *pb.NodeMessage) error {
	body, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = w.Write(append(binary.LittleEndian.AppendUint32(nil, uint32(len(body))), body...))
	return err
}

func putMessage(id []byte) *pb.ClientMessage {
	return &pb.ClientMessage{Ops: []*pb.ClientOp{{Op: &pb.ClientOp_PutObject{PutObject: &pb.PutObject{ObjectId: id}}}}}
}

func readyID(t *testing.T, msg *pb.NodeMessage) []byte {
	t.Helper()
	if len(msg.Ops) != 1 || msg.Ops[0].GetObjectReady() == nil {
		t.Fatalf("unexpected message from the node: %d ops", len(msg.Ops))
	}
	return msg.Ops[0].GetObjectReady().ObjectId
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// echoNode answers each client frame with an ObjectReady carrying the
// PutObject's id, until the client goes away.
func echoNode(server net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		for {
			msg, err := readClientFrame(server)
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				done <- err
				return
			}
			id := msg.Ops[0].GetPutObject().ObjectId
			reply := &pb.NodeMessage{Ops: []*pb.NodeOp{{Op: &pb.NodeOp_ObjectReady{ObjectReady: &pb.ObjectReady{ObjectId: id}}}}}
			if err := writeNodeFrame(server, reply); err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

func TestUnixFramesBothWays(t *testing.T) {
	node := startFakeNode(t)
	u, server := node.dial(t)
	echoed := echoNode(server)

	// Several small frames in a row: their replies may arrive in one read.
	for i := range 3 {
		if err := u.Send(putMessage([]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		msg, err := u.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := readyID(t, msg); !bytes.Equal(got, []byte{byte(i)}) {
			t.Fatalf("reply %d: id %v", i, got)
		}
	}
	// Frames larger than the socket buffer arrive whole, both ways, and a
	// small one after a large one (buffer reuse) too.
	for i, size := range []int{bigFrameBytes, 100, bigFrameBytes + 1} {
		want := pattern(size, byte(i))
		if err := u.Send(putMessage(want)); err != nil {
			t.Fatal(err)
		}
		msg, err := u.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := readyID(t, msg); !bytes.Equal(got, want) {
			t.Fatalf("frame of %d bytes came back as %d different bytes", size, len(got))
		}
	}
	// The client closes: the node reads end of stream.
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-echoed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the node did not see the client close")
	}
}

func TestUnixNodeCloses(t *testing.T) {
	node := startFakeNode(t)
	u, server := node.dial(t)
	// A clean end between frames is io.EOF.
	server.Close()
	if _, err := u.Recv(); err != io.EOF {
		t.Fatalf("Recv after the node closed: %v, want io.EOF", err)
	}
	// Sending to a node gone away fails (EPIPE, without a SIGPIPE).
	var err error
	for range 10 {
		if err = u.Send(putMessage([]byte{1})); err != nil {
			break
		}
	}
	if err == nil || !errors.Is(err, unix.EPIPE) {
		t.Fatalf("Send to a closed node: %v, want EPIPE", err)
	}

	// An end inside a frame is io.ErrUnexpectedEOF.
	u, server = node.dial(t)
	if _, err := server.Write([]byte{100, 0, 0, 0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	server.Close()
	if _, err := u.Recv(); err != io.ErrUnexpectedEOF {
		t.Fatalf("Recv of a cut frame: %v, want io.ErrUnexpectedEOF", err)
	}
}

// socketInode is the inode of the socket fd refers to (0 if fd is not open).
func socketInode(fd int) uint64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Ino
}

func TestUnixCloseUnblocksRecv(t *testing.T) {
	node := startFakeNode(t)
	u, server := node.dial(t)
	fd := u.sock.fd
	inode := socketInode(fd)
	if inode == 0 {
		t.Fatal("no socket")
	}
	recvErr := make(chan error, 1)
	go func() {
		_, err := u.Recv()
		recvErr <- err
	}()
	// Give the Recv time to wait in poll. Without it the test still passes
	// (a Recv after Close fails at once) but tests less.
	time.Sleep(50 * time.Millisecond)
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-recvErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Recv after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Recv")
	}
	// The last user out closed the descriptor (its number may have been
	// reused since, but not for this socket).
	if socketInode(fd) == inode {
		t.Fatal("the socket's descriptor is still open")
	}
	// The node sees the client gone.
	if _, err := readClientFrame(server); err != io.EOF {
		t.Fatalf("node read after the client closed: %v, want io.EOF", err)
	}
	if err := u.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := u.Send(putMessage([]byte{1})); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v, want net.ErrClosed", err)
	}
	if _, err := u.Recv(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Recv after Close: %v, want net.ErrClosed", err)
	}
}

func TestUnixCloseUnblocksSend(t *testing.T) {
	node := startFakeNode(t)
	u, _ := node.dial(t) // a node that never reads: the socket fills up
	sendErr := make(chan error, 1)
	go func() { sendErr <- u.Send(putMessage(pattern(bigFrameBytes, 0))) }()
	time.Sleep(50 * time.Millisecond) // as in TestUnixCloseUnblocksRecv
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-sendErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Send after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock a Send on a full socket")
	}
}

func TestDialUnixErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.sock")
	if _, err := DialUnix(context.Background(), missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dial a missing socket: %v, want not found", err)
	}
	node := startFakeNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := DialUnix(ctx, node.path); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with a cancelled context: %v, want context.Canceled", err)
	}
}
