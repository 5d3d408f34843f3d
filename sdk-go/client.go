package ember

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/sdk-go/internal/core"
	"github.com/ember-run/ember/sdk-go/internal/pb"
	"github.com/ember-run/ember/sdk-go/internal/session"
	"github.com/ember-run/ember/sdk-go/internal/transport"
	"github.com/ember-run/ember/sdk-go/internal/values"
)

// Language names the language a function is written in.
type Language = core.Language

// The languages a function can be written in.
const (
	Go     = core.Go
	Python = core.Python
	Rust   = core.Rust
)

// Options say which node to connect to and how.
type Options struct {
	// Address of the node (host:port). Empty: $EMBER_ADDRESS, else the
	// newest live session under SessionRoot. A node whose session is on
	// this machine is reached over its Unix socket; otherwise (or with
	// Remote) over gRPC.
	Address string
	// Token is the cluster token. Empty: $EMBER_TOKEN, else the session
	// file's.
	Token string
	// SessionRoot is where sessions live. Empty: $EMBER_TMPDIR, else
	// /tmp/ember-<uid>.
	SessionRoot string
	// Namespace for named things (empty: an anonymous one).
	Namespace string
	// Remote forces the gRPC transport (NodeService.OpenStream) even when
	// the node's session is on this machine. Without shared memory, values
	// travel by value: Put up to 256 MiB, and Get receives stored values up
	// to 256 MiB (larger: ref.FlightRecords).
	Remote bool
	// Warn receives the node's warnings (default: printed to stderr).
	Warn func(message string)
}

// Client is a connection to a node: it calls functions, puts and gets
// objects. It is safe for concurrent use.
type Client struct {
	rt     *core.Runtime
	node   endpoint
	closed atomic.Bool
	// The node's Arrow Flight service (ObjectRef.FlightRecords), dialed at
	// the first pull.
	flight flightConn
}

// endpoint is how the node is reached from outside: its gRPC and Arrow
// Flight address, and the cluster token.
type endpoint struct {
	address string
	token   string
}

// Connect opens a connection to a node and says hello.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	rt, node, err := connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &Client{rt: rt, node: node}, nil
}

func connect(ctx context.Context, opts Options) (*core.Runtime, endpoint, error) {
	root := session.Root(opts.SessionRoot)
	address := opts.Address
	if address == "" {
		address = os.Getenv("EMBER_ADDRESS")
	}
	address = strings.TrimPrefix(strings.TrimPrefix(address, "ember://"), "ray://")
	if address == "auto" {
		address = ""
	}
	token := opts.Token
	if token == "" {
		token = os.Getenv("EMBER_TOKEN")
	}
	var conn transport.Conn
	info, err := session.Find(root, address)
	if err != nil && address == "" {
		return nil, endpoint{}, fmt.Errorf("ember: %w", err)
	}
	if opts.Remote && info != nil {
		// gRPC to the session's node (its address and token).
		address = info.Address
		if token == "" {
			token = info.Token
		}
		info = nil
	}
	if info != nil {
		address = info.Address
		if token == "" {
			token = info.Token
		}
		c, err := transport.DialUnix(ctx, info.Socket)
		if err != nil {
			return nil, endpoint{}, fmt.Errorf("ember: connect to the node at %s: %w", info.Socket, err)
		}
		conn = c
	} else {
		if address == "" {
			return nil, endpoint{}, errors.New("ember: no node address (set Options.Address or EMBER_ADDRESS)")
		}
		if token == "" {
			return nil, endpoint{}, fmt.Errorf("ember: no session for %s on this machine, and no token for a remote connection (set Options.Token or EMBER_TOKEN)", address)
		}
		c, err := transport.DialGRPC(ctx, address, token)
		if err != nil {
			return nil, endpoint{}, fmt.Errorf("ember: connect to %s: %w", address, err)
		}
		conn = c
	}
	rt, err := core.Connect(ctx, conn, core.Hello{Token: token, Namespace: opts.Namespace, Language: core.Go})
	if err != nil {
		return nil, endpoint{}, err
	}
	if opts.Warn != nil {
		rt.Warn = opts.Warn
	}
	if a := rt.Hello.GetNodeAddress(); a != "" {
		address = a
	}
	return rt, endpoint{address: address, token: token}, nil
}

// Close ends the connection; the node drops this client's references.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.closeFlight()
	return c.rt.Close()
}

// NodeID is the id of the node this client is connected to.
func (c *Client) NodeID() []byte { return c.rt.Hello.NodeId }

// Address is the gRPC and Arrow Flight address (host:port) of the node
// this client is connected to, whichever transport the client uses.
func (c *Client) Address() string { return c.node.address }

// Token is the cluster token this client authenticated with; other
// clients of the node's gRPC and Arrow Flight services send it as
// "authorization: Bearer <token>".
func (c *Client) Token() string { return c.node.token }

// Function names a function by language and registered name (a Go or Rust
// function served by a worker, or a Python function exported by name).
type Function struct {
	Language Language
	Name     string
}

// CallOptions tune one call.
type CallOptions struct {
	// Resources the task needs (e.g. {"CPU": 1}). Default: none for Go and
	// Rust functions (their worker has its own capacity), {"CPU": 1} for
	// Python functions.
	Resources map[string]float64
	// MaxRetries after the process running the task dies (nil: 3; -1:
	// unlimited). See Retries.
	MaxRetries *int
	// Name shown for the task (default: the function's name).
	Name string
}

// Retries is a helper for CallOptions.MaxRetries.
func Retries(n int) *int { return &n }

// DefaultMaxRetries is the retry budget of a call without MaxRetries.
const DefaultMaxRetries = 3

// Call runs fn with args and returns a reference to its result at once.
// Each argument is encoded as msgpack (a Raw as plain bytes; an
// arrow.RecordBatch, []arrow.RecordBatch or arrow.Table as ARROW, an Arrow
// IPC stream: a pyarrow Table in Python); an ObjectRef argument is passed
// by reference and its value given to fn.
func (c *Client) Call(ctx context.Context, fn Function, args ...any) (ObjectRef, error) {
	return c.CallWith(ctx, fn, CallOptions{}, args...)
}

// CallWith is Call with options.
func (c *Client) CallWith(ctx context.Context, fn Function, opts CallOptions, args ...any) (ObjectRef, error) {
	if err := ctx.Err(); err != nil {
		return ObjectRef{}, err
	}
	if err := c.rt.Err(); err != nil {
		return ObjectRef{}, err
	}
	if fn.Name == "" {
		return ObjectRef{}, errors.New("ember: Call of a Function without a name")
	}
	taskArgs, temps, err := c.encodeArgs(ctx, fn.Name, args)
	if err != nil {
		return ObjectRef{}, err
	}
	resources := opts.Resources
	if resources == nil && fn.Language == Python {
		resources = map[string]float64{"CPU": 1}
	}
	retries := DefaultMaxRetries
	if opts.MaxRetries != nil {
		retries = *opts.MaxRetries
	}
	name := opts.Name
	if name == "" {
		name = fn.Name
	}
	// The spec and its function in one allocation.
	b := &specBlock{
		spec: pb.TaskSpec{
			Args:          taskArgs,
			NumReturns:    1,
			Resources:     resources,
			MaxRetries:    int32(retries),
			Name:          name,
			CrossLanguage: true,
		},
		fn: pb.FunctionDescriptor{Language: pb.Language(fn.Language), Name: fn.Name},
	}
	b.spec.Function = &b.fn
	ids := c.rt.Submit(&b.spec, temps)
	// ObjectRef arguments must not be released (by the GC) before the
	// submission that holds them is queued.
	runtime.KeepAlive(args)
	return c.newRef(ids[0]), nil
}

type specBlock struct {
	spec pb.TaskSpec
	fn   pb.FunctionDescriptor
}

// encodeArgs makes the arguments of a call of what: ObjectRefs by
// reference, values inline (values.Encode: msgpack, RAW or ARROW), values over
// the inline limit put into shared memory and passed by reference (temps:
// released once the call is sent).
func (c *Client) encodeArgs(ctx context.Context, what string, args []any) ([]*pb.TaskArg, []core.ObjectID, error) {
	taskArgs := make([]*pb.TaskArg, len(args))
	blocks := pb.NewInlineArgs(len(args))
	var temps []core.ObjectID
	fail := func(err error) ([]*pb.TaskArg, []core.ObjectID, error) {
		for _, t := range temps {
			c.rt.Release(t)
		}
		return nil, nil, err
	}
	limit := c.rt.MaxInline
	if !c.rt.Local() {
		limit = max(limit, 16<<20)
	}
	for i, arg := range args {
		if ref, ok := arg.(ObjectRef); ok {
			if ref.h == nil {
				return fail(fmt.Errorf("ember: argument %d is a zero ObjectRef", i))
			}
			taskArgs[i] = blocks.Ref(i, ref.h.id[:])
			continue
		}
		if ref, ok := arg.(*ObjectRef); ok && ref != nil && ref.h != nil {
			taskArgs[i] = blocks.Ref(i, ref.h.id[:])
			continue
		}
		format, data, err := values.Encode(arg)
		if err != nil {
			return fail(fmt.Errorf("ember: argument %d of %s: %w", i, what, err))
		}
		if len(data) > limit {
			// Large: stored once in shared memory and passed by reference.
			id, err := c.rt.Put(ctx, format, data)
			if err != nil {
				return fail(fmt.Errorf("ember: argument %d of %s: %w", i, what, err))
			}
			temps = append(temps, id)
			taskArgs[i] = blocks.Ref(i, id[:])
			continue
		}
		taskArgs[i] = blocks.Inline(i, format, data)
	}
	return taskArgs, temps, nil
}

// Put stores v in the object store and returns a reference to it: msgpack;
// a Raw as plain bytes (RAW); an arrow.RecordBatch, a []arrow.RecordBatch
// (one schema) or an arrow.Table as ARROW, an Arrow IPC stream (what
// Python's ember.put of a pyarrow Table stores, and reads back as a
// pyarrow Table). Values over the node's inline limit go through shared
// memory. Put does not Release the Arrow values it is given.
func (c *Client) Put(ctx context.Context, v any) (ObjectRef, error) {
	format, data, err := values.Encode(v)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("ember: put: %w", err)
	}
	id, err := c.rt.Put(ctx, format, data)
	if err != nil {
		return ObjectRef{}, err
	}
	return c.newRef(id), nil
}

// Get waits for ref's value and decodes it into out (a non-nil pointer, or
// nil to only wait). A task that failed returns its *TaskError. A context
// that ends returns at once: ctx.Err() when cancelled, an error that is
// both ErrTimeout and context.DeadlineExceeded at a deadline.
//
// An ARROW value (an Arrow IPC stream) decodes into *arrow.Table,
// *[]arrow.RecordBatch, or *arrow.RecordBatch when it holds exactly one
// batch (none: an empty batch); its buffers are copied out of shared
// memory into Go memory (the shared memory is given back when Get
// returns), so the result stays valid and Release is optional. Into
// *[]byte or *Raw it is the IPC stream's bytes. A value of another format
// into an Arrow type, or an ARROW value into any other type, is an error
// saying so. See also ObjectRef.FlightRecords.
func (c *Client) Get(ctx context.Context, ref ObjectRef, out any) error {
	if ref.h == nil {
		return errors.New("ember: Get of a zero ObjectRef")
	}
	if ref.h.released.Load() {
		return fmt.Errorf("%w: %s", ErrReleased, ref)
	}
	// A reference is read through the client that holds it.
	v, err := ref.h.c.rt.Get(ctx, ref.h.id)
	if err != nil {
		return err
	}
	defer v.Done()
	// Keep the reference (and so the object) alive until decoded.
	defer runtime.KeepAlive(ref.h)
	if out == nil {
		return nil
	}
	if v.Format == pb.ValueFormat_FORMAT_UNSPECIFIED && len(v.Data) == 0 {
		return fmt.Errorf("ember: %s has an empty value", ref)
	}
	if err := values.Decode(v.Format, v.Data, out); err != nil {
		return fmt.Errorf("ember: decode %s: %w", ref, err)
	}
	return nil
}

// Wait waits until n of refs are ready (their value or error arrived),
// timeout passes (negative: no timeout; 0: check once) or ctx ends. ready
// holds at most n refs, in the order of refs; notReady the others.
func (c *Client) Wait(ctx context.Context, refs []ObjectRef, n int, timeout time.Duration) (ready, notReady []ObjectRef, err error) {
	ids := make([]core.ObjectID, len(refs))
	for i, r := range refs {
		if r.h == nil {
			return nil, nil, fmt.Errorf("ember: Wait: refs[%d] is a zero ObjectRef", i)
		}
		ids[i] = r.h.id
	}
	if n <= 0 {
		n = 1
	}
	flags, err := c.rt.Wait(ctx, ids, n, timeout)
	if flags == nil {
		return nil, nil, err
	}
	for i, r := range refs {
		if flags[i] && len(ready) < n {
			ready = append(ready, r)
		} else {
			notReady = append(notReady, r)
		}
	}
	runtime.KeepAlive(refs)
	return ready, notReady, err
}

// Cancel stops the task that makes ref: a queued task fails with
// ErrTaskCancelled; a running Go or Rust task's result is replaced by the
// cancellation when it comes back.
func (c *Client) Cancel(ref ObjectRef, force bool) {
	if ref.h == nil {
		return
	}
	task := ObjectID(ref.h.id).Task()
	c.rt.Send(&pb.ClientOp{Op: &pb.ClientOp_CancelTask{CancelTask: &pb.CancelTask{TaskId: task[:], Force: force}}})
}
