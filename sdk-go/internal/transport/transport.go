// Package transport carries the client stream (ClientMessage up,
// NodeMessage down) to a node: over its Unix socket (local) or over the
// NodeService.OpenStream gRPC stream (remote).
package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/ember-run/ember/sdk-go/internal/pb"
)

// MaxFrameBytes is the largest frame either side accepts (ember-proto's MAX_FRAME_BYTES).
const MaxFrameBytes = 256 << 20

// Conn is one client stream. Send is called by one goroutine at a time,
// Recv by one goroutine at a time; Close may be called from any.
type Conn interface {
	Send(*pb.ClientMessage) error
	Recv() (*pb.NodeMessage, error)
	Close() error
	// Local says whether the node's shared memory is reachable (same machine).
	Local() bool
}

// Unix is the local transport: 4-byte little-endian length + protobuf
// frames over the node's Unix socket (see unixSocket for why the socket is
// not a net.Conn).
type Unix struct {
	sock *unixSocket
	rd   *bufio.Reader
	wbuf []byte
	rbuf []byte
}

// DialUnix connects to a node's socket.
func DialUnix(ctx context.Context, path string) (*Unix, error) {
	sock, err := dialUnixSocket(ctx, path)
	if err != nil {
		return nil, err
	}
	return &Unix{sock: sock, rd: bufio.NewReaderSize(sock, 256<<10)}, nil
}

// Send writes msg as one frame (encoded by pb.AppendClientMessage, which
// writes what proto.Marshal does, faster for the ops of a call).
func (u *Unix) Send(msg *pb.ClientMessage) error {
	buf := append(u.wbuf[:0], 0, 0, 0, 0)
	buf, err := pb.AppendClientMessage(buf, msg.Ops)
	if err != nil {
		return err
	}
	size := len(buf) - 4
	if size > MaxFrameBytes {
		return fmt.Errorf("message of %d bytes is over the frame limit of %d bytes", size, MaxFrameBytes)
	}
	binary.LittleEndian.PutUint32(buf, uint32(size))
	err = u.sock.writeAll(buf)
	if cap(buf) <= 4<<20 {
		u.wbuf = buf
	} else {
		u.wbuf = nil
	}
	return err
}

// Recv reads one frame.
func (u *Unix) Recv() (*pb.NodeMessage, error) {
	var header [4]byte
	if _, err := io.ReadFull(u.rd, header[:]); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint32(header[:])
	if size > MaxFrameBytes {
		return nil, fmt.Errorf("frame of %d bytes from the node is over the limit of %d bytes", size, MaxFrameBytes)
	}
	body := u.rbuf
	if cap(body) < int(size) {
		body = make([]byte, size)
	}
	body = body[:size]
	if _, err := io.ReadFull(u.rd, body); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	// The decoded message does not refer to body: the buffer is reused.
	msg, err := pb.UnmarshalNodeMessage(body)
	if err != nil {
		return nil, fmt.Errorf("malformed message from the node: %w", err)
	}
	if size <= 4<<20 {
		u.rbuf = body
	} else {
		u.rbuf = nil
	}
	return msg, nil
}

// ErrInterrupted is RecvOr's answer when its wake descriptor became
// readable before a frame began to arrive.
var ErrInterrupted = errors.New("transport: receive interrupted")

// RecvOr is Recv that returns ErrInterrupted instead when wake (a
// descriptor, e.g. an eventfd; -1: none) becomes readable before a frame
// begins to arrive (a frame begun is read whole). It waits in the calling
// goroutine's own thread, without yielding first: for a goroutine that
// waits for the answer itself.
func (u *Unix) RecvOr(wake int) (*pb.NodeMessage, error) {
	if u.rd.Buffered() == 0 {
		ok, err := u.sock.waitReadable(wake)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrInterrupted
		}
	}
	return u.Recv()
}

// Close shuts the socket down (a blocked Recv returns) and closes it once
// no Send or Recv is inside it.
func (u *Unix) Close() error { return u.sock.Close() }

// Local is true: the node's shared memory is on this machine.
func (u *Unix) Local() bool { return true }

// GRPC is the remote transport: NodeService.OpenStream with the token as
// `authorization: Bearer <token>` metadata.
type GRPC struct {
	cc     *grpc.ClientConn
	stream grpc.BidiStreamingClient[pb.ClientMessage, pb.NodeMessage]
	cancel context.CancelFunc
	once   sync.Once
}

// MaxGRPCMessageBytes is the largest gRPC message either side takes (the node's limit).
const MaxGRPCMessageBytes = 512 << 20

// DialGRPC opens the stream to address (host:port).
func DialGRPC(ctx context.Context, address, token string) (*GRPC, error) {
	cc, err := grpc.NewClient(address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxGRPCMessageBytes),
			grpc.MaxCallSendMsgSize(MaxGRPCMessageBytes),
		),
	)
	if err != nil {
		return nil, err
	}
	// The stream lives until Close, not until ctx (which bounds the connect).
	streamCtx, cancel := context.WithCancel(context.Background())
	streamCtx = metadata.AppendToOutgoingContext(streamCtx, "authorization", "Bearer "+token)
	type result struct {
		s   grpc.BidiStreamingClient[pb.ClientMessage, pb.NodeMessage]
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := pb.NewNodeServiceClient(cc).OpenStream(streamCtx, grpc.WaitForReady(true))
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			cancel()
			cc.Close()
			return nil, r.err
		}
		return &GRPC{cc: cc, stream: r.s, cancel: cancel}, nil
	case <-ctx.Done():
		cancel()
		cc.Close()
		return nil, ctx.Err()
	}
}

// Send sends one message on the stream. After the server ended the
// stream it returns io.EOF; Recv then returns the reason.
func (g *GRPC) Send(msg *pb.ClientMessage) error { return g.stream.Send(msg) }

// Recv receives one message.
func (g *GRPC) Recv() (*pb.NodeMessage, error) { return g.stream.Recv() }

// Close ends the stream and the connection.
func (g *GRPC) Close() error {
	g.once.Do(func() {
		_ = g.stream.CloseSend()
		g.cancel()
		g.cc.Close()
	})
	return nil
}

// Local is false: no shared memory across machines.
func (g *GRPC) Local() bool { return false }
