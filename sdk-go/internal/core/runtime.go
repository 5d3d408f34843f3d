// Package core is the Go SDK's connection to its node: the client stream
// (a writer that batches ops and a reader that applies what the node
// sends), local reference counts, objects that arrived, shared-memory
// grants, and requests awaiting replies. The public package ember wraps it.
package core

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/sdk-go/internal/pb"
	"github.com/ember-run/ember/sdk-go/internal/transport"
)

// ObjectID is 16 bytes of task id and a 4-byte little-endian index.
type ObjectID [20]byte

// TaskID is an 8-byte per-client prefix and an 8-byte little-endian counter.
type TaskID [16]byte

// ActorID is 16 random bytes made by the actor's creator.
type ActorID [16]byte

// ReturnID is the id of a task's i-th (0-based) return.
func ReturnID(task TaskID, i uint32) ObjectID {
	var id ObjectID
	copy(id[:16], task[:])
	binary.LittleEndian.PutUint32(id[16:], i+1)
	return id
}

// Stats counts what went through shared memory.
type Stats struct {
	ShmPuts   uint64 // values this client wrote into the node's arena (puts, large arguments)
	ShmGets   uint64 // values read from the arena through a grant
	ShmReturn uint64 // task returns a worker wrote into the arena
}

// Hello describes this client to the node.
type Hello struct {
	Token     string
	Namespace string
	Language  Language
}

// Runtime is one connection to a node.
type Runtime struct {
	conn  transport.Conn
	Hello *pb.HelloReply
	// Values up to this size travel inline.
	MaxInline int

	arenaOnce sync.Once
	arena     []byte
	arenaErr  error
	// The arena is unmapped at Close, or after the last reader done after it.
	arenaMu     sync.Mutex
	arenaUsers  int
	arenaClosed bool

	outMu   sync.Mutex
	out     []*pb.ClientOp
	spare   []*pb.ClientOp
	outWake chan struct{}
	writeMu sync.Mutex

	mu      sync.Mutex
	objs    map[ObjectID]*object
	reqs    map[uint64]*request
	nextReq uint64

	prefix  [8]byte
	counter atomic.Uint64

	dead     chan struct{}
	deadOnce sync.Once
	deadErr  error
	closing  atomic.Bool
	closeReq chan struct{}
	writerWG sync.WaitGroup

	// Worker side: every ExecuteTask op goes here (set before serving),
	// and every drop_actor to dropper.
	executor atomic.Pointer[func(*pb.ExecuteTask)]
	dropper  atomic.Pointer[func(*pb.KillActor)]
	// Warn receives the node's Warning messages and request-less errors.
	Warn func(string)

	// Leader/follower reading (the local socket, a client that serves no
	// tasks): a Get that has to wait reads the socket itself when nobody
	// else does, so that its answer wakes no other goroutine (waking one
	// wakes a second OS thread, the dearest step of a sync round trip).
	// The reader goroutine then stands by, and takes the socket back once
	// no Get has read for a whole standbyTick; while it stands by,
	// submissions and releases are queued without waking the writer (the
	// next submission's or Get's flush, or the reader's tick, sends them).
	lf         recvOr
	role       atomic.Int32 // roleVacant, roleReader or roleCaller
	roleGen    atomic.Uint64
	readerWake chan struct{}
	leaderMu   sync.Mutex // held by the caller reading; Close waits for it
	handedOff  bool       // r.mu: a Get's goroutine was woken by a value read
	parkedGets int        // r.mu: Gets waiting on an object's ready channel
	// pendingReturns counts the returns of submissions not arrived yet
	// (r.mu): a Get reads itself only for the one call in flight, the
	// pattern of sync calls. With more, the reader goroutine reads (on
	// another CPU, beside the goroutine taking the values).
	pendingReturns int
	parkedOther    atomic.Int32
	// evfd interrupts a caller's poll when its context ends (-1: none).
	evfd   int
	evfdMu sync.Mutex

	shmPuts, shmGets, shmReturns atomic.Uint64
}

type object struct {
	count   int
	waiters int // Gets waiting on ready (counted in Runtime.parkedGets)
	// pending: a return of this client's submission, not arrived yet
	// (counted in Runtime.pendingReturns).
	pending bool
	value   *pb.ObjectValue
	// ready is closed when the value arrives; made by the first waiter
	// (most values arrive before anyone waits).
	ready      chan struct{}
	isReady    bool
	subscribed bool
	released   bool
	mapWaiters []*mapWaiter
	watchers   []chan struct{}
	// Put by this client: the node has it once it has read the PutObject.
	put bool
}

type mapWaiter struct {
	ch        chan *pb.ObjectValue
	abandoned bool
}

type request struct {
	ch        chan *pb.NodeOp
	abandoned bool
	objectID  ObjectID // for CreateObject: aborted if the reply comes too late
	create    bool
}

// Connect says Hello on conn and waits for the node's answer.
func Connect(ctx context.Context, conn transport.Conn, hello Hello) (*Runtime, error) {
	r := &Runtime{
		conn:       conn,
		readerWake: make(chan struct{}, 1),
		evfd:       -1,
		outWake:    make(chan struct{}, 1),
		objs:       make(map[ObjectID]*object),
		reqs:       make(map[uint64]*request),
		dead:       make(chan struct{}),
		closeReq:   make(chan struct{}),
	}
	binary.LittleEndian.PutUint64(r.prefix[:], rand.Uint64())
	r.Warn = func(msg string) { fmt.Fprintln(os.Stderr, "ember:", msg) }
	msg := &pb.ClientMessage{Ops: []*pb.ClientOp{{Op: &pb.ClientOp_Hello{Hello: &pb.Hello{
		Token:    hello.Token,
		Kind:     pb.ClientKind_DRIVER,
		Pid:      uint32(os.Getpid()),
		Language: pb.Language(hello.Language),
		// The node keeps the namespace; empty is anonymous.
		Namespace: hello.Namespace,
	}}}}}
	type answer struct {
		msg *pb.NodeMessage
		err error
	}
	done := make(chan answer, 1)
	go func() {
		if err := conn.Send(msg); err != nil {
			if errors.Is(err, io.EOF) {
				// The node ended the stream (a gRPC refusal): Recv says why.
				if _, rerr := conn.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
					err = rerr
				}
			}
			done <- answer{nil, err}
			return
		}
		m, err := conn.Recv()
		done <- answer{m, err}
	}()
	var first *pb.NodeMessage
	select {
	case a := <-done:
		if a.err != nil {
			conn.Close()
			if status.Code(a.err) == codes.Unauthenticated {
				return nil, &TaskError{Kind: KindUnauthenticated, Message: status.Convert(a.err).Message()}
			}
			return nil, fmt.Errorf("ember: hello to the node failed: %w", a.err)
		}
		first = a.msg
	case <-ctx.Done():
		conn.Close()
		return nil, ctx.Err()
	}
	var rest []*pb.NodeOp
	for i, op := range first.Ops {
		switch x := op.Op.(type) {
		case *pb.NodeOp_HelloReply:
			r.Hello = x.HelloReply
			rest = first.Ops[i+1:]
		case *pb.NodeOp_Error:
			if r.Hello == nil {
				conn.Close()
				return nil, FromProto(x.Error.Error)
			}
		}
		if r.Hello != nil {
			break
		}
	}
	if r.Hello == nil {
		conn.Close()
		return nil, errors.New("ember: the node did not answer hello")
	}
	r.MaxInline = int(r.Hello.MaxInlineBytes)
	if r.MaxInline <= 0 {
		r.MaxInline = 100 << 10
	}
	if lf, ok := conn.(recvOr); ok {
		if fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err == nil {
			r.lf, r.evfd = lf, fd
		}
	}
	r.writerWG.Add(1)
	go r.writeLoop()
	if len(rest) > 0 {
		r.handle(&pb.NodeMessage{Ops: rest})
	}
	r.role.Store(roleReader)
	go r.readLoop()
	return r, nil
}

// SetExecutor routes ExecuteTask ops to f (a serving process).
func (r *Runtime) SetExecutor(f func(*pb.ExecuteTask)) { r.executor.Store(&f) }

// SetActorDropper routes drop_actor ops to f (a process hosting actors).
// f and the executor see the ops in the order the node sent them.
func (r *Runtime) SetActorDropper(f func(*pb.KillActor)) { r.dropper.Store(&f) }

// Stats returns the shared-memory counters.
func (r *Runtime) Stats() Stats {
	return Stats{ShmPuts: r.shmPuts.Load(), ShmGets: r.shmGets.Load(), ShmReturn: r.shmReturns.Load()}
}

// Local says whether the node's shared memory is reachable.
func (r *Runtime) Local() bool { return r.conn.Local() && r.Hello.ShmPath != "" }

// Dead is closed when the connection is gone; Err says why.
func (r *Runtime) Dead() <-chan struct{} { return r.dead }

// Err is why the connection ended (nil while it is up).
func (r *Runtime) Err() error {
	select {
	case <-r.dead:
		return r.deadErr
	default:
		return nil
	}
}

func (r *Runtime) fail(err error) {
	r.deadOnce.Do(func() {
		if r.closing.Load() {
			r.deadErr = ErrClosed
		} else {
			r.deadErr = fmt.Errorf("%w: %v", ErrClosed, err)
		}
		close(r.dead)
		r.conn.Close()
	})
}

// Close sends what is queued, then closes the connection (the node drops
// this client's references and grants).
func (r *Runtime) Close() error {
	if !r.closing.CompareAndSwap(false, true) {
		<-r.dead
		return nil
	}
	close(r.closeReq)
	r.writerWG.Wait()
	r.fail(ErrClosed)
	if r.lf != nil {
		// No context's end pokes evfd now; a caller reading (its poll ends
		// with the socket shut down) lets go of it first.
		r.evfdMu.Lock()
		fd := r.evfd
		r.evfd = -1
		r.evfdMu.Unlock()
		r.leaderMu.Lock()
		unix.Close(fd)
		r.leaderMu.Unlock()
	}
	r.arenaOnce.Do(func() {})
	r.arenaMu.Lock()
	r.arenaClosed = true
	if r.arenaUsers == 0 && r.arena != nil {
		unmapArena(r.arena)
	}
	r.arenaMu.Unlock()
	return nil
}

// ---- sending ----

// Send queues ops; the writer goroutine sends everything queued as one
// frame (see also SendNow).
func (r *Runtime) Send(ops ...*pb.ClientOp) {
	r.outMu.Lock()
	r.out = append(r.out, ops...)
	r.outMu.Unlock()
	r.wake()
}

// queueRefChange queues a reference release or a grant given back (unmap),
// merged into a RefUpdate still queued.
func (r *Runtime) queueRefChange(remove, unmap *ObjectID) {
	r.outMu.Lock()
	var ru *pb.RefUpdate
	if n := len(r.out); n > 0 {
		if last, ok := r.out[n-1].Op.(*pb.ClientOp_RefUpdate); ok && len(last.RefUpdate.Add) == 0 {
			ru = last.RefUpdate
		}
	}
	if ru == nil {
		ru = &pb.RefUpdate{}
		r.out = append(r.out, &pb.ClientOp{Op: &pb.ClientOp_RefUpdate{RefUpdate: ru}})
	}
	if remove != nil {
		ru.Remove = append(ru.Remove, remove[:])
	}
	if unmap != nil {
		ru.Unmap = append(ru.Unmap, unmap[:])
	}
	r.outMu.Unlock()
	if !r.standingBy() {
		r.wake()
	}
}

// StandingBy says whether the reader goroutine stands by, leaving the
// socket to Gets (for tests).
func (r *Runtime) StandingBy() bool { return r.standingBy() }

// standingBy says whether the reader goroutine stands by (a Get reads, or
// did lately): queued ops are then sent by the next flush or its tick.
func (r *Runtime) standingBy() bool {
	return r.lf != nil && r.role.Load() != roleReader
}

func (r *Runtime) wake() {
	select {
	case r.outWake <- struct{}{}:
	default:
	}
}

// SendNow queues ops and writes them from this goroutine unless a write
// is under way (then the writer goroutine sends them next). Used where a
// goroutine is about to wait for the answer anyway: it saves the handoff
// to the writer.
func (r *Runtime) SendNow(ops ...*pb.ClientOp) {
	r.outMu.Lock()
	r.out = append(r.out, ops...)
	r.outMu.Unlock()
	if !r.flush() {
		r.wake()
	}
}

// FlushNow writes what is queued from this goroutine (see SendNow).
func (r *Runtime) FlushNow() {
	r.outMu.Lock()
	pending := len(r.out) > 0
	r.outMu.Unlock()
	if pending && !r.flush() {
		r.wake()
	}
}

// sendOps writes ops as one ClientMessage; on a remote connection (large
// puts travel by value) as several, each under maxRemoteMessageBytes but
// for a single larger op.
func (r *Runtime) sendOps(ops []*pb.ClientOp) error {
	if r.Local() {
		return r.conn.Send(&pb.ClientMessage{Ops: ops})
	}
	start, size := 0, 0
	for i, op := range ops {
		n := proto.Size(op)
		if i > start && size+n > maxRemoteMessageBytes {
			if err := r.conn.Send(&pb.ClientMessage{Ops: ops[start:i]}); err != nil {
				return err
			}
			start, size = i, 0
		}
		size += n
	}
	return r.conn.Send(&pb.ClientMessage{Ops: ops[start:]})
}

// flush writes what is queued; false when another goroutine is writing
// (it holds the write lock, and the caller must wake the writer).
func (r *Runtime) flush() bool {
	for {
		if !r.writeMu.TryLock() {
			return false
		}
		r.outMu.Lock()
		ops := r.out
		r.out = r.spare[:0]
		r.spare = nil
		r.outMu.Unlock()
		if len(ops) > 0 && r.Err() == nil {
			if err := r.sendOps(ops); err != nil {
				r.writeMu.Unlock()
				r.fail(err)
				return true
			}
		}
		clear(ops)
		r.outMu.Lock()
		if cap(ops) <= 4096 {
			r.spare = ops[:0]
		}
		r.outMu.Unlock()
		r.writeMu.Unlock()
		// Ops queued by a goroutine whose TryLock failed while this one wrote.
		r.outMu.Lock()
		pending := len(r.out) > 0
		r.outMu.Unlock()
		if !pending {
			return true
		}
	}
}

func (r *Runtime) writeLoop() {
	defer r.writerWG.Done()
	for {
		closing := false
		select {
		case <-r.outWake:
		case <-r.closeReq:
			closing = true
		case <-r.dead:
			return
		}
		r.writeMu.Lock()
		r.outMu.Lock()
		ops := r.out
		r.out = r.spare[:0]
		r.spare = nil
		r.outMu.Unlock()
		if len(ops) > 0 {
			if err := r.conn.Send(&pb.ClientMessage{Ops: ops}); err != nil {
				r.writeMu.Unlock()
				r.fail(err)
				return
			}
		}
		r.writeMu.Unlock()
		clear(ops)
		r.outMu.Lock()
		if cap(ops) <= 4096 {
			r.spare = ops[:0]
		} else {
			r.spare = nil
		}
		r.outMu.Unlock()
		if closing {
			r.outMu.Lock()
			left := len(r.out)
			r.outMu.Unlock()
			if left == 0 {
				return
			}
		}
	}
}

// ---- receiving ----

func (r *Runtime) readLoop() {
	for {
		msg, err := r.conn.Recv()
		if err != nil {
			r.fail(err)
			r.wakeAll()
			return
		}
		r.handle(msg)
		if r.lf == nil {
			continue
		}
		r.mu.Lock()
		handedOff := r.handedOff
		r.handedOff = false
		idle := r.parkedGets == 0 && r.pendingReturns == 0
		r.mu.Unlock()
		if handedOff && idle && r.parkedOther.Load() == 0 && r.executor.Load() == nil {
			// A Get was answered and nobody else waits: the Get's
			// goroutine likely waits again soon, and then reads itself.
			if !r.standby() {
				return
			}
		}
	}
}

const (
	roleVacant = iota
	roleReader // the reader goroutine
	roleCaller // a Get's goroutine
)

// standbyTick is how long the socket stays unread, at most, while no Get
// reads it (and how long ops queued meanwhile wait, at most, to be sent).
const standbyTick = time.Millisecond

// recvOr is the local transport's Recv that a descriptor interrupts.
type recvOr interface {
	RecvOr(wake int) (*pb.NodeMessage, error)
}

// standby gives the socket up until no Get has read it for a whole
// standbyTick, or a waiter needs a reader; false once the connection died.
func (r *Runtime) standby() bool {
	r.role.Store(roleVacant)
	if r.needReader() && r.role.CompareAndSwap(roleVacant, roleReader) {
		return true
	}
	gen := r.roleGen.Load()
	t := time.NewTimer(standbyTick)
	defer t.Stop()
	for {
		select {
		case <-r.readerWake:
			if r.role.CompareAndSwap(roleVacant, roleReader) {
				r.FlushNow()
				return true
			}
		case <-t.C:
			r.FlushNow()
			if g := r.roleGen.Load(); g != gen {
				gen = g
			} else if r.role.CompareAndSwap(roleVacant, roleReader) {
				return true
			}
			t.Reset(standbyTick)
		case <-r.dead:
			return false
		}
	}
}

// needReader says whether a goroutine waits for something to be read.
func (r *Runtime) needReader() bool {
	r.mu.Lock()
	n := r.parkedGets
	r.mu.Unlock()
	return n > 0 || r.parkedOther.Load() > 0
}

// wakeReader makes the reader goroutine take the socket if nobody reads it.
func (r *Runtime) wakeReader() {
	if r.lf != nil && r.role.Load() == roleVacant {
		select {
		case r.readerWake <- struct{}{}:
		default:
		}
	}
}

// parkOther counts a goroutine about to wait for an answer (a request's,
// a grant, Wait) and makes sure somebody reads; the returned func uncounts it.
func (r *Runtime) parkOther() func() {
	if r.lf == nil {
		return func() {}
	}
	r.parkedOther.Add(1)
	r.wakeReader()
	return func() { r.parkedOther.Add(-1) }
}

// poke interrupts the poll of the caller reading (its context ended).
func (r *Runtime) poke() {
	r.evfdMu.Lock()
	if r.evfd >= 0 {
		one := [8]byte{1}
		_, _ = unix.Write(r.evfd, one[:])
	}
	r.evfdMu.Unlock()
}

// readFor reads the socket from this goroutine (which holds roleCaller)
// until obj's value arrived, ctx ended or the connection died, then gives
// the socket up.
func (r *Runtime) readFor(ctx context.Context, obj *object, what string) error {
	r.leaderMu.Lock()
	wake := -1
	if ctx.Done() != nil {
		// Under evfdMu: Close sets it to -1 (it closes the descriptor only
		// after leaderMu, held here, is let go).
		r.evfdMu.Lock()
		wake = r.evfd
		r.evfdMu.Unlock()
		stop := context.AfterFunc(ctx, r.poke)
		defer stop()
	}
	var err error
	for {
		r.mu.Lock()
		ready := obj.isReady
		r.mu.Unlock()
		if ready {
			break
		}
		if r.Err() != nil {
			err = r.deadErr
			break
		}
		msg, rerr := r.lf.RecvOr(wake)
		if rerr == transport.ErrInterrupted {
			var buf [8]byte
			_, _ = unix.Read(wake, buf[:])
			if ctx.Err() != nil {
				err = ctxError(ctx, what)
				break
			}
			continue
		}
		if rerr != nil {
			r.fail(rerr)
			r.wakeAll()
			err = r.deadErr
			break
		}
		r.handle(msg)
	}
	r.leaderMu.Unlock()
	r.role.Store(roleVacant)
	r.roleGen.Add(1)
	if r.needReader() {
		r.wakeReader()
	}
	return err
}

// wakeAll closes what waiters wait on after the connection died.
func (r *Runtime) wakeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, req := range r.reqs {
		select {
		case req.ch <- nil:
		default:
		}
	}
}

func (r *Runtime) handle(msg *pb.NodeMessage) {
	// ExecuteTask and drop_actor ops, in order (a drop and a later
	// creation of the same actor must not swap).
	var work []*pb.NodeOp
	var unmaps []ObjectID
	var aborts []ObjectID
	var warnings []string
	r.mu.Lock()
	for _, op := range msg.Ops {
		switch x := op.Op.(type) {
		case *pb.NodeOp_ObjectReady:
			if u, ok := r.objectReady(x.ObjectReady); !ok {
				unmaps = append(unmaps, u)
			}
		case *pb.NodeOp_ExecuteTask, *pb.NodeOp_DropActor:
			work = append(work, op)
		case *pb.NodeOp_CreateObjectReply:
			if id, abort := r.reply(x.CreateObjectReply.RequestId, op); abort {
				aborts = append(aborts, id)
			}
		case *pb.NodeOp_InfoReply:
			r.reply(x.InfoReply.RequestId, op)
		case *pb.NodeOp_ActorReply:
			r.reply(x.ActorReply.RequestId, op)
		case *pb.NodeOp_Error:
			if x.Error.RequestId != 0 {
				r.reply(x.Error.RequestId, op)
			} else {
				warnings = append(warnings, "the node reported an error: "+FromProto(x.Error.Error).Error())
			}
		case *pb.NodeOp_Warning:
			warnings = append(warnings, x.Warning.Message)
		}
	}
	r.mu.Unlock()
	for i := range unmaps {
		r.queueRefChange(nil, &unmaps[i])
	}
	for _, id := range aborts {
		r.Send(&pb.ClientOp{Op: &pb.ClientOp_AbortObject{AbortObject: &pb.AbortObject{ObjectId: id[:]}}})
	}
	for _, w := range warnings {
		if r.Warn != nil {
			r.Warn(w)
		}
	}
	if len(work) > 0 {
		execute, drop := r.executor.Load(), r.dropper.Load()
		for _, op := range work {
			switch x := op.Op.(type) {
			case *pb.NodeOp_ExecuteTask:
				if execute != nil {
					(*execute)(x.ExecuteTask)
				}
			case *pb.NodeOp_DropActor:
				if drop != nil {
					(*drop)(x.DropActor)
				}
			}
		}
	}
}

// objectReady applies one ObjectReady (r.mu held). It returns (id, false)
// when a grant arrived that nobody waits for: it must be given back.
func (r *Runtime) objectReady(ready *pb.ObjectReady) (ObjectID, bool) {
	var id ObjectID
	if len(ready.ObjectId) != len(id) {
		return id, true
	}
	copy(id[:], ready.ObjectId)
	value := ready.Value
	if value == nil {
		value = ErrorValue(&pb.TaskError{Kind: pb.ErrorKind_INTERNAL, Message: "object announced without a value"})
	}
	obj := r.objs[id]
	if _, isGrant := value.Body.(*pb.ObjectValue_Shm); isGrant {
		// The answer to a GetObjects{map}: one location per request.
		if obj == nil || len(obj.mapWaiters) == 0 {
			return id, false
		}
		w := obj.mapWaiters[0]
		obj.mapWaiters = obj.mapWaiters[1:]
		if w.abandoned {
			return id, false
		}
		w.ch <- value
		return id, true
	}
	if obj == nil {
		return id, true
	}
	_, isInline := value.Body.(*pb.ObjectValue_InlineData)
	if obj.isReady && len(obj.mapWaiters) > 0 && (value.Format == pb.ValueFormat_ERROR || (isInline && !r.Local())) {
		// A map request failed (a restore), or (a remote client, no shared
		// memory) it was answered by value: for that request only.
		w := obj.mapWaiters[0]
		obj.mapWaiters = obj.mapWaiters[1:]
		if !w.abandoned {
			w.ch <- value
		}
		return id, true
	}
	if !obj.isReady {
		obj.value = value
		r.markReady(obj)
	}
	return id, true
}

func (r *Runtime) markReady(o *object) {
	o.isReady = true
	if o.pending {
		o.pending = false
		r.pendingReturns--
	}
	if o.ready != nil {
		close(o.ready)
		r.handedOff = true
		r.parkedGets -= o.waiters
		o.waiters = 0
	}
	for _, w := range o.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	o.watchers = nil
}

// reply hands a node answer to its request (r.mu held). For a create that
// nobody waits for any more, it returns the id to abort.
func (r *Runtime) reply(id uint64, op *pb.NodeOp) (ObjectID, bool) {
	req := r.reqs[id]
	if req == nil {
		return ObjectID{}, false
	}
	delete(r.reqs, id)
	if req.abandoned {
		_, created := op.Op.(*pb.NodeOp_CreateObjectReply)
		return req.objectID, req.create && created
	}
	req.ch <- op
	return ObjectID{}, false
}

// ---- requests ----

func (r *Runtime) newRequest() (uint64, *request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextReq++
	req := &request{ch: make(chan *pb.NodeOp, 1)}
	r.reqs[r.nextReq] = req
	return r.nextReq, req
}

// await waits for a request's answer.
func (r *Runtime) await(ctx context.Context, id uint64, req *request, what string) (*pb.NodeOp, error) {
	defer r.parkOther()()
	select {
	case op := <-req.ch:
		if op == nil {
			return nil, r.deadErr
		}
		if e, ok := op.Op.(*pb.NodeOp_Error); ok {
			return nil, FromProto(e.Error.Error)
		}
		return op, nil
	case <-r.dead:
		return nil, r.deadErr
	case <-ctx.Done():
		r.mu.Lock()
		if _, pending := r.reqs[id]; pending {
			req.abandoned = true
		} else {
			// Answered meanwhile: a created block must be given back.
			select {
			case op := <-req.ch:
				if op != nil && req.create {
					if _, ok := op.Op.(*pb.NodeOp_CreateObjectReply); ok {
						defer r.Send(&pb.ClientOp{Op: &pb.ClientOp_AbortObject{AbortObject: &pb.AbortObject{ObjectId: req.objectID[:]}}})
					}
				}
			default:
			}
		}
		r.mu.Unlock()
		return nil, ctxError(ctx, what)
	}
}

func ctxError(ctx context.Context, what string) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return &timeoutError{what: what, cause: err}
	}
	return err
}

// CreateTimeout is how long a create waits for room in a full store.
var CreateTimeout = 30 * time.Second

// createBlock asks the node for size bytes of shared memory for id.
func (r *Runtime) createBlock(ctx context.Context, id ObjectID, size int) (*pb.ShmLocation, error) {
	reqID, req := r.newRequest()
	req.create = true
	req.objectID = id
	r.SendNow(&pb.ClientOp{Op: &pb.ClientOp_CreateObject{CreateObject: &pb.CreateObject{
		RequestId: reqID,
		ObjectId:  id[:],
		Size:      uint64(size),
		TimeoutMs: uint64(CreateTimeout / time.Millisecond),
	}}})
	op, err := r.await(ctx, reqID, req, "room in the object store")
	if err != nil {
		return nil, err
	}
	loc := op.Op.(*pb.NodeOp_CreateObjectReply).CreateObjectReply.Location
	if loc == nil {
		return nil, errors.New("ember: the node answered a create without a location")
	}
	return loc, nil
}

// WriteShm creates a block for id, fills it with data and returns the shm
// value (not sealed yet: the caller seals with PutObject or TaskFinished).
func (r *Runtime) WriteShm(ctx context.Context, id ObjectID, format pb.ValueFormat, data []byte) (*pb.ObjectValue, error) {
	arena, err := r.useArena()
	if err != nil {
		return nil, err
	}
	defer r.doneArena()
	loc, err := r.createBlock(ctx, id, len(data))
	if err != nil {
		return nil, err
	}
	end := loc.Offset + uint64(len(data))
	if end > uint64(len(arena)) || loc.Size < uint64(len(data)) {
		r.Send(&pb.ClientOp{Op: &pb.ClientOp_AbortObject{AbortObject: &pb.AbortObject{ObjectId: id[:]}}})
		return nil, fmt.Errorf("ember: the node gave a block [%d, %d) outside the arena of %d bytes", loc.Offset, end, len(arena))
	}
	copy(arena[loc.Offset:end], data)
	return &pb.ObjectValue{Format: format, Body: &pb.ObjectValue_Shm{Shm: &pb.ShmLocation{Offset: loc.Offset, Size: uint64(len(data))}}}, nil
}

// ---- objects ----

// NewTaskID makes the next task id of this client.
func (r *Runtime) NewTaskID() TaskID {
	var t TaskID
	copy(t[:8], r.prefix[:])
	binary.LittleEndian.PutUint64(t[8:], r.counter.Add(1))
	return t
}

// NewPutID is a fresh random id for a put (index 0).
func NewPutID() ObjectID {
	var id ObjectID
	binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(id[8:16], rand.Uint64())
	return id
}

// MaxRemotePutBytes is the largest value a remote client (no shared
// memory) puts: it travels by value on the gRPC stream, whose messages are
// limited to 512 MiB (messages are split at maxRemoteMessageBytes).
const MaxRemotePutBytes = 256 << 20

// maxRemoteMessageBytes: a remote client's ClientMessage gathers no more
// ops once they take this many bytes.
const maxRemoteMessageBytes = 64 << 20

// inlineLimit is the largest value sent inline: max_inline_bytes, or (no
// shared memory, a remote client) the node's ceiling for inline values.
func (r *Runtime) inlineLimit() int {
	if r.Local() {
		return r.MaxInline
	}
	return max(r.MaxInline, 16<<20)
}

// Put stores data as a new object held by this client.
func (r *Runtime) Put(ctx context.Context, format pb.ValueFormat, data []byte) (ObjectID, error) {
	if err := r.Err(); err != nil {
		return ObjectID{}, err
	}
	id := NewPutID()
	if len(data) <= r.inlineLimit() {
		value := &pb.ObjectValue{Format: format, Body: &pb.ObjectValue_InlineData{InlineData: data}}
		r.mu.Lock()
		obj := &object{count: 1, subscribed: true, put: true}
		obj.value = value
		r.markReady(obj)
		r.objs[id] = obj
		r.mu.Unlock()
		r.Send(&pb.ClientOp{Op: &pb.ClientOp_PutObject{PutObject: &pb.PutObject{ObjectId: id[:], Value: value}}})
		return id, nil
	}
	if !r.Local() {
		// No shared memory: the bytes go on the stream and the node copies
		// them into its store. Kept here only as a size, read back by value.
		if len(data) > MaxRemotePutBytes {
			return ObjectID{}, fmt.Errorf("ember: a value of %d bytes is over the %d MiB a remote connection (gRPC, no shared memory) puts by value", len(data), MaxRemotePutBytes>>20)
		}
		r.putStored(id, format, len(data), &pb.ObjectValue{Format: format, Body: &pb.ObjectValue_InlineData{InlineData: data}})
		return id, nil
	}
	value, err := r.WriteShm(ctx, id, format, data)
	if err != nil {
		return ObjectID{}, err
	}
	r.putStored(id, format, len(data), value)
	r.shmPuts.Add(1)
	return id, nil
}

// putStored records a put the node keeps in its store (known here by size
// only, read back through a map request) and sends it as wire.
func (r *Runtime) putStored(id ObjectID, format pb.ValueFormat, size int, wire *pb.ObjectValue) {
	r.mu.Lock()
	obj := &object{count: 1, subscribed: true, put: true}
	obj.value = &pb.ObjectValue{Format: format, Body: &pb.ObjectValue_StoredSize{StoredSize: uint64(size)}}
	r.markReady(obj)
	r.objs[id] = obj
	r.mu.Unlock()
	r.Send(&pb.ClientOp{Op: &pb.ClientOp_PutObject{PutObject: &pb.PutObject{ObjectId: id[:], Value: wire}}})
}

// Submit sends a task; this client holds a reference to each return.
// temps are references released right after the submission (the task
// holds them now).
func (r *Runtime) Submit(spec *pb.TaskSpec, temps []ObjectID) []ObjectID {
	task := r.NewTaskID()
	spec.TaskId = task[:]
	spec.JobId = r.Hello.JobId
	n := spec.NumReturns
	ids := make([]ObjectID, n)
	r.mu.Lock()
	for i := range ids {
		ids[i] = ReturnID(task, uint32(i))
		// The node pushes ObjectReady of a submission's returns unasked.
		r.objs[ids[i]] = &object{count: 1, subscribed: true, pending: true}
	}
	r.pendingReturns += len(ids)
	r.mu.Unlock()
	op := pb.NewSubmitTaskOp(spec)
	if r.standingBy() {
		// Sent from here with what was queued meanwhile (releases), in one
		// write, without waking the writer.
		r.outMu.Lock()
		r.out = append(r.out, op)
		r.outMu.Unlock()
		r.FlushNow()
	} else {
		r.Send(op)
	}
	for _, t := range temps {
		r.Release(t)
	}
	return ids
}

// CreateActor sends a CreateActor for spec (spec.ActorCreation set) and
// waits for the node's answer: the actor (for get_if_exists, maybe an
// existing one), or the refusal as a *TaskError. temps are references
// released once it is sent. The creation's return (nil, or the
// constructor's error, which every call of the actor returns too) is not
// kept: its reference is dropped at once.
func (r *Runtime) CreateActor(ctx context.Context, spec *pb.TaskSpec, temps []ObjectID) (*pb.ActorInfo, error) {
	task := r.NewTaskID()
	spec.TaskId = task[:]
	spec.JobId = r.Hello.JobId
	id, req := r.newRequest()
	r.Send(&pb.ClientOp{Op: &pb.ClientOp_CreateActor{CreateActor: &pb.CreateActor{RequestId: id, Spec: spec}}})
	ret := ReturnID(task, 0)
	r.queueRefChange(&ret, nil)
	for _, t := range temps {
		r.Release(t)
	}
	r.FlushNow()
	op, err := r.await(ctx, id, req, "the actor's creation")
	if err != nil {
		return nil, err
	}
	return op.Op.(*pb.NodeOp_ActorReply).ActorReply.Actor, nil
}

// GetActor looks up a named actor (a *TaskError of kind NOT_FOUND when
// there is none).
func (r *Runtime) GetActor(ctx context.Context, name, namespace string) (*pb.ActorInfo, error) {
	id, req := r.newRequest()
	r.SendNow(&pb.ClientOp{Op: &pb.ClientOp_GetActor{GetActor: &pb.GetActor{RequestId: id, Name: name, Namespace: namespace}}})
	op, err := r.await(ctx, id, req, "the actor "+name)
	if err != nil {
		return nil, err
	}
	return op.Op.(*pb.NodeOp_ActorReply).ActorReply.Actor, nil
}

// AddRef counts one more local reference to id (the first sends an add).
func (r *Runtime) AddRef(id ObjectID) {
	r.mu.Lock()
	obj := r.objs[id]
	if obj != nil {
		obj.count++
		r.mu.Unlock()
		return
	}
	r.objs[id] = &object{count: 1}
	r.mu.Unlock()
	r.Send(&pb.ClientOp{Op: &pb.ClientOp_RefUpdate{RefUpdate: &pb.RefUpdate{Add: [][]byte{id[:]}}}})
}

// Release drops one local reference (the last sends a remove).
func (r *Runtime) Release(id ObjectID) {
	r.mu.Lock()
	obj := r.objs[id]
	if obj == nil {
		r.mu.Unlock()
		return
	}
	obj.count--
	if obj.count > 0 {
		r.mu.Unlock()
		return
	}
	delete(r.objs, id)
	obj.released = true
	if !obj.isReady {
		r.markReady(obj)
	}
	// Gets waiting for a grant end (the grant is given back when it comes).
	for _, w := range obj.mapWaiters {
		if !w.abandoned {
			w.ch <- nil
		}
	}
	obj.mapWaiters = nil
	r.mu.Unlock()
	r.queueRefChange(&id, nil)
}

// Value is an object's bytes: inline, or a view of the arena valid until
// Done is called.
type Value struct {
	Format pb.ValueFormat
	Data   []byte
	done   func()
}

// Done gives back the shared memory the value was read from (if any).
func (v *Value) Done() {
	if v.done != nil {
		v.done()
		v.done = nil
	}
}

// Get waits for id's value. A value that failed is returned as a
// *TaskError. The caller calls Done on the value when it has decoded it.
func (r *Runtime) Get(ctx context.Context, id ObjectID) (*Value, error) {
	obj, value, err := r.awaitValue(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.read(ctx, id, obj, value)
}

// Await waits for id's value like Get, without reading it: its format, and
// whether it is stored in the node's object store (not inline here). A
// value that failed is returned as a *TaskError.
func (r *Runtime) Await(ctx context.Context, id ObjectID) (format pb.ValueFormat, stored bool, err error) {
	_, value, err := r.awaitValue(ctx, id)
	if err != nil {
		return 0, false, err
	}
	switch body := value.Body.(type) {
	case *pb.ObjectValue_InlineData:
		if value.Format == pb.ValueFormat_ERROR {
			return 0, false, ErrorFromValue(body.InlineData)
		}
	case *pb.ObjectValue_StoredSize, *pb.ObjectValue_Shm:
		stored = true
	case nil:
		if value.Format == pb.ValueFormat_ERROR {
			return 0, false, ErrorFromValue(nil)
		}
	}
	return value.Format, stored, nil
}

// awaitValue waits until id's value has arrived.
func (r *Runtime) awaitValue(ctx context.Context, id ObjectID) (*object, *pb.ObjectValue, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, ctxError(ctx, "object "+hexID(id))
	}
	r.mu.Lock()
	obj := r.objs[id]
	if obj == nil {
		r.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: object %s", ErrReleased, hexID(id))
	}
	subscribe := !obj.subscribed
	obj.subscribed = true
	value := obj.value
	var ready chan struct{}
	lead := false
	if !obj.isReady {
		if r.lf != nil && r.pendingReturns <= 1 && r.executor.Load() == nil && r.role.CompareAndSwap(roleVacant, roleCaller) {
			// Nobody reads the socket: this goroutine reads it itself.
			lead = true
		} else {
			if obj.ready == nil {
				obj.ready = make(chan struct{})
			}
			ready = obj.ready
			obj.waiters++
			r.parkedGets++
		}
	}
	r.mu.Unlock()
	if subscribe {
		op := &pb.ClientOp{Op: &pb.ClientOp_GetObjects{GetObjects: &pb.GetObjects{ObjectIds: [][]byte{id[:]}}}}
		if lead {
			r.outMu.Lock()
			r.out = append(r.out, op)
			r.outMu.Unlock()
		} else {
			r.Send(op)
		}
	}
	if lead {
		// Send what is queued (the submission) from here, then read.
		r.FlushNow()
		if err := r.readFor(ctx, obj, "object "+hexID(id)); err != nil {
			return nil, nil, err
		}
		r.mu.Lock()
		value = obj.value
		r.mu.Unlock()
	} else if ready != nil {
		// Counted in parkedGets: somebody must read.
		r.wakeReader()
		select {
		case <-ready:
		default:
			// About to wait: send what is queued (the submission) from here.
			r.FlushNow()
			select {
			case <-ready:
			case <-ctx.Done():
				r.unpark(obj)
				return nil, nil, ctxError(ctx, "object "+hexID(id))
			case <-r.dead:
				r.unpark(obj)
				return nil, nil, r.deadErr
			}
		}
		r.mu.Lock()
		value = obj.value
		r.mu.Unlock()
	}
	if value == nil {
		// Released before its value came.
		return nil, nil, fmt.Errorf("%w: object %s", ErrReleased, hexID(id))
	}
	return obj, value, nil
}

// unpark uncounts a Get that stopped waiting for obj before it was ready.
func (r *Runtime) unpark(obj *object) {
	r.mu.Lock()
	if !obj.isReady && obj.waiters > 0 {
		obj.waiters--
		r.parkedGets--
	}
	r.mu.Unlock()
}

func (r *Runtime) read(ctx context.Context, id ObjectID, obj *object, value *pb.ObjectValue) (*Value, error) {
	switch body := value.Body.(type) {
	case *pb.ObjectValue_InlineData:
		if value.Format == pb.ValueFormat_ERROR {
			return nil, ErrorFromValue(body.InlineData)
		}
		return &Value{Format: value.Format, Data: body.InlineData}, nil
	case *pb.ObjectValue_StoredSize:
		return r.readMapped(ctx, id, obj)
	case *pb.ObjectValue_Shm:
		// Not sent unasked; treat as stored.
		return r.readMapped(ctx, id, obj)
	case nil:
		if value.Format == pb.ValueFormat_ERROR {
			return nil, ErrorFromValue(nil)
		}
		return &Value{Format: value.Format}, nil
	}
	return nil, fmt.Errorf("ember: object %s has a value of an unknown kind", hexID(id))
}

// requestMap sends GetObjects{map} for id and waits for the node's answer:
// a granted location, or (a remote client) the value itself, or an ERROR
// value. When ctx ends first, a grant that already arrived is given back.
func (r *Runtime) requestMap(ctx context.Context, id ObjectID, obj *object) (*pb.ObjectValue, error) {
	w := &mapWaiter{ch: make(chan *pb.ObjectValue, 1)}
	r.mu.Lock()
	if obj.released {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: object %s", ErrReleased, hexID(id))
	}
	obj.mapWaiters = append(obj.mapWaiters, w)
	r.mu.Unlock()
	r.SendNow(&pb.ClientOp{Op: &pb.ClientOp_GetObjects{GetObjects: &pb.GetObjects{ObjectIds: [][]byte{id[:]}, Map: true}}})
	var granted *pb.ObjectValue
	unpark := r.parkOther()
	defer unpark()
	select {
	case granted = <-w.ch:
	case <-ctx.Done():
		r.mu.Lock()
		select {
		case granted = <-w.ch:
		default:
			w.abandoned = true
		}
		r.mu.Unlock()
		if granted != nil {
			if _, ok := granted.Body.(*pb.ObjectValue_Shm); ok {
				r.queueRefChange(nil, &id)
			}
		}
		return nil, ctxError(ctx, "object "+hexID(id))
	case <-r.dead:
		return nil, r.deadErr
	}
	if granted == nil {
		return nil, fmt.Errorf("%w: object %s", ErrReleased, hexID(id))
	}
	return granted, nil
}

// readByValue is readMapped for a client without shared memory (a gRPC
// stream): the node answers the same request with the value's bytes.
func (r *Runtime) readByValue(ctx context.Context, id ObjectID, obj *object) (*Value, error) {
	got, err := r.requestMap(ctx, id, obj)
	if err != nil {
		return nil, err
	}
	data, ok := got.Body.(*pb.ObjectValue_InlineData)
	if got.Format == pb.ValueFormat_ERROR {
		if ok {
			return nil, ErrorFromValue(data.InlineData)
		}
		return nil, ErrorFromValue(nil)
	}
	if !ok {
		return nil, fmt.Errorf("ember: object %s was answered without its value (a remote client maps no shared memory)", hexID(id))
	}
	return &Value{Format: got.Format, Data: data.InlineData}, nil
}

// readMapped asks the node for a grant of a stored object and returns a
// view of the arena; Done gives the grant back.
func (r *Runtime) readMapped(ctx context.Context, id ObjectID, obj *object) (*Value, error) {
	if !r.Local() {
		return r.readByValue(ctx, id, obj)
	}
	arena, err := r.useArena()
	if err != nil {
		return nil, err
	}
	inUse := true
	defer func() {
		if inUse {
			r.doneArena()
		}
	}()
	granted, err := r.requestMap(ctx, id, obj)
	if err != nil {
		return nil, err
	}
	shm, ok := granted.Body.(*pb.ObjectValue_Shm)
	if !ok {
		if granted.Format == pb.ValueFormat_ERROR {
			if d, ok := granted.Body.(*pb.ObjectValue_InlineData); ok {
				return nil, ErrorFromValue(d.InlineData)
			}
		}
		return nil, fmt.Errorf("ember: map of object %s answered without a location", hexID(id))
	}
	loc := shm.Shm
	end := loc.Offset + loc.Size
	if end > uint64(len(arena)) {
		r.queueRefChange(nil, &id)
		return nil, fmt.Errorf("ember: object %s lies outside the arena", hexID(id))
	}
	r.shmGets.Add(1)
	v := &Value{Format: granted.Format, Data: arena[loc.Offset:end:end]}
	inUse = false
	v.done = func() {
		r.doneArena()
		r.queueRefChange(nil, &id)
	}
	if granted.Format == pb.ValueFormat_ERROR {
		te := ErrorFromValue(v.Data)
		v.Done()
		return nil, te
	}
	return v, nil
}

// IsPut says whether this client put id (a PutObject that may still be on
// its way to the node: see Sync).
func (r *Runtime) IsPut(id ObjectID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	obj := r.objs[id]
	return obj != nil && obj.put
}

// Sync returns once the node has handled every op this client sent or
// queued before it (the node handles a connection's ops in order), e.g. a
// put, before another service of the node (Arrow Flight) is asked for it.
func (r *Runtime) Sync(ctx context.Context) error {
	_, err := r.ClusterStatus(ctx)
	return err
}

// IsReady says whether id's value has arrived (without waiting).
func (r *Runtime) IsReady(id ObjectID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	obj := r.objs[id]
	return obj != nil && obj.isReady
}

// Wait returns when at least n of ids are ready, the timeout passes
// (negative: no timeout) or ctx ends; ready[i] says which are.
func (r *Runtime) Wait(ctx context.Context, ids []ObjectID, n int, timeout time.Duration) ([]bool, error) {
	ready := make([]bool, len(ids))
	if n > len(ids) {
		n = len(ids)
	}
	notify := make(chan struct{}, 1)
	var subscribe [][]byte
	r.mu.Lock()
	objs := make([]*object, len(ids))
	for i, id := range ids {
		obj := r.objs[id]
		if obj == nil {
			r.mu.Unlock()
			return nil, fmt.Errorf("%w: object %s", ErrReleased, hexID(id))
		}
		objs[i] = obj
		if !obj.subscribed {
			obj.subscribed = true
			subscribe = append(subscribe, append([]byte{}, id[:]...))
		}
		if !obj.isReady {
			obj.watchers = append(obj.watchers, notify)
		}
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		for _, obj := range objs {
			for j, w := range obj.watchers {
				if w == notify {
					obj.watchers = append(obj.watchers[:j], obj.watchers[j+1:]...)
					break
				}
			}
		}
		r.mu.Unlock()
	}()
	if len(subscribe) > 0 {
		r.Send(&pb.ClientOp{Op: &pb.ClientOp_GetObjects{GetObjects: &pb.GetObjects{ObjectIds: subscribe}}})
	}
	r.FlushNow()
	defer r.parkOther()()
	var timer <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	for {
		count := 0
		r.mu.Lock()
		for i, obj := range objs {
			ready[i] = obj.isReady
			if ready[i] {
				count++
			}
		}
		r.mu.Unlock()
		if count >= n {
			return ready, nil
		}
		select {
		case <-notify:
		case <-timer:
			return ready, nil
		case <-ctx.Done():
			return ready, ctxError(ctx, "objects")
		case <-r.dead:
			return ready, r.deadErr
		}
	}
}

// ClusterStatus asks the node for the cluster's status.
func (r *Runtime) ClusterStatus(ctx context.Context) (*pb.ClusterStatus, error) {
	id, req := r.newRequest()
	r.SendNow(&pb.ClientOp{Op: &pb.ClientOp_InfoRequest{InfoRequest: &pb.InfoRequest{RequestId: id, Kind: pb.InfoKind_CLUSTER_STATUS}}})
	op, err := r.await(ctx, id, req, "the cluster status")
	if err != nil {
		return nil, err
	}
	return op.Op.(*pb.NodeOp_InfoReply).InfoReply.ClusterStatus, nil
}

func hexID(id ObjectID) string { return fmt.Sprintf("%x", id[:]) }
