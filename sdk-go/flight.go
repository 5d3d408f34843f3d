package ember

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/sdk-go/internal/core"
	"github.com/ember-run/ember/sdk-go/internal/pb"
	"github.com/ember-run/ember/sdk-go/internal/values"
)

// maxFlightMessage is the largest Flight message accepted (the node's
// own limit for one message).
const maxFlightMessage = 512 << 20

// flightConn is a client's connection to its node's Arrow Flight service
// (made at the first pull, closed with the client).
type flightConn struct {
	mu     sync.Mutex
	client flight.Client
	closed bool
}

func (c *Client) flightClient() (flight.Client, error) {
	f := &c.flight
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	if f.client != nil {
		return f.client, nil
	}
	if c.node.address == "" {
		return nil, errors.New("ember: the node's Arrow Flight address is not known")
	}
	fc, err := flight.NewClientWithMiddleware(c.node.address, nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxFlightMessage)))
	if err != nil {
		return nil, fmt.Errorf("ember: Arrow Flight client for %s: %w", c.node.address, err)
	}
	f.client = fc
	return fc, nil
}

func (c *Client) closeFlight() {
	f := &c.flight
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.client != nil {
		_ = f.client.Close()
		f.client = nil
	}
}

// FlightRecords waits for the object's value, then streams its record
// batches from the node's Arrow Flight service (DoGet, ticket: the object
// id in hex, header "authorization: Bearer <token>", at Client.Address):
// a pull for tables too big to hold at once, and the way a remote client
// reads a large Arrow object. It works whichever transport the client
// uses. The object must be an ARROW value (a pyarrow Table, an
// arrow.RecordBatch or arrow.Table put or returned); a task that failed
// returns its *TaskError.
//
// The reader is an array.RecordReader: each batch is valid until the next
// Next (Retain it to keep it); its buffers are Go memory, not shared
// memory. Release the reader when done: that ends the stream. The batches
// are those the node sends (it may split large stored batches).
func (r ObjectRef) FlightRecords(ctx context.Context) (array.RecordReader, error) {
	if r.h == nil {
		return nil, errors.New("ember: FlightRecords of a zero ObjectRef")
	}
	if r.h.released.Load() {
		return nil, fmt.Errorf("%w: %s", ErrReleased, r)
	}
	c := r.h.c
	format, _, err := c.rt.Await(ctx, r.h.id)
	if err != nil {
		return nil, err
	}
	if format != pb.ValueFormat_ARROW {
		return nil, fmt.Errorf("ember: %s is a %s value, not Arrow: only ARROW values are pulled as record batches (use Get)", r, formatName(format))
	}
	if c.rt.IsPut(r.h.id) {
		// The put may still be on its way to the node.
		if err := c.rt.Sync(ctx); err != nil {
			return nil, err
		}
	}
	fc, err := c.flightClient()
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+c.node.token)
	stream, err := fc.DoGet(sctx, &flight.Ticket{Ticket: []byte(r.ID().String())})
	if err != nil {
		cancel()
		return nil, flightError(r, err)
	}
	rd, err := flight.NewRecordReader(stream, ipc.WithAllocator(values.Allocator))
	if err != nil {
		cancel()
		return nil, flightError(r, err)
	}
	fr := &flightReader{Reader: rd, cancel: cancel, ref: r}
	fr.refs.Store(1)
	return fr, nil
}

// FlightTable pulls the object's record batches over Arrow Flight (see
// FlightRecords) into a Table (Go memory; Release is optional).
func (r ObjectRef) FlightTable(ctx context.Context) (arrow.Table, error) {
	rd, err := r.FlightRecords(ctx)
	if err != nil {
		return nil, err
	}
	defer rd.Release()
	var batches []arrow.RecordBatch
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	for rd.Next() {
		b := rd.RecordBatch()
		b.Retain()
		batches = append(batches, b)
	}
	if err := rd.Err(); err != nil {
		return nil, err
	}
	return array.NewTableFromRecords(rd.Schema(), batches), nil
}

// flightReader ends the DoGet stream when released, and keeps the object
// alive (its reference) while it is read.
type flightReader struct {
	*flight.Reader
	cancel context.CancelFunc
	ref    ObjectRef
	refs   atomic.Int64
}

func (f *flightReader) Retain() {
	f.refs.Add(1)
	f.Reader.Retain()
}

func (f *flightReader) Release() {
	f.Reader.Release()
	if f.refs.Add(-1) == 0 {
		f.cancel()
	}
}

// Err is the stream's error, as FlightRecords reports errors.
func (f *flightReader) Err() error {
	if err := f.Reader.Err(); err != nil {
		return flightError(f.ref, err)
	}
	return nil
}

func flightError(r ObjectRef, err error) error {
	if err == nil {
		return nil
	}
	var te *core.TaskError
	if errors.As(err, &te) || errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		return err
	}
	switch s, _ := status.FromError(err); s.Code() {
	case codes.Unauthenticated:
		return &core.TaskError{Kind: core.KindUnauthenticated, Message: "Arrow Flight pull of " + r.String() + ": " + s.Message()}
	case codes.Canceled:
		return fmt.Errorf("ember: Arrow Flight pull of %s: %w", r, context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("ember: Arrow Flight pull of %s: %w: %w", r, ErrTimeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("ember: Arrow Flight pull of %s: %w", r, err)
}

func formatName(f pb.ValueFormat) string {
	switch f {
	case pb.ValueFormat_MSGPACK:
		return "MSGPACK"
	case pb.ValueFormat_RAW:
		return "RAW"
	case pb.ValueFormat_PICKLE:
		return "PICKLE (Python-only)"
	case pb.ValueFormat_ARROW:
		return "ARROW"
	}
	return f.String()
}
