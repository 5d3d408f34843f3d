package ember

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ember-run/ember/sdk-go/internal/core"
	"github.com/ember-run/ember/sdk-go/internal/pb"
	"github.com/ember-run/ember/sdk-go/internal/values"
	"github.com/ember-run/ember/sdk-go/internal/worker"
)

// Register makes fn callable by name from any language once a worker
// serves it (ServeWorker). fn is a plain Go function:
//
//	func(args...) (R, error)   func(args...) R   func(args...) error   func(args...)
//
// optionally with a leading context.Context (cancelled when the worker
// stops; ClientFromContext gives a client for nested calls). Each argument
// is decoded from msgpack into the parameter's type (structs from maps,
// by `msgpack:"name"` tags); a parameter of type arrow.RecordBatch,
// []arrow.RecordBatch or arrow.Table takes an ARROW argument (a pyarrow
// Table from Python), copied into Go memory. R is encoded as msgpack (a
// Raw as plain bytes; an arrow.RecordBatch, []arrow.RecordBatch or
// arrow.Table as ARROW, which the worker does not Release). A returned
// error or a panic fails the task with a *TaskError.
//
// Register panics if fn is not such a function or name is taken (like
// http.HandleFunc): call it from init or main.
func Register(name string, fn any) {
	if err := worker.Register(name, fn); err != nil {
		panic(err)
	}
}

// Registered lists the registered function names, sorted.
func Registered() []string { return worker.Names() }

// ServeOptions configure a worker.
type ServeOptions struct {
	// Options say which node to connect to (see Connect).
	Options
	// Concurrency is how many tasks run at once (default runtime.NumCPU()).
	Concurrency int
	// Names are the registered functions to serve, and ActorClasses the
	// registered actor classes to host. Both empty: everything registered;
	// otherwise exactly those listed (Names alone: no actor class).
	Names        []string
	ActorClasses []string
}

// Worker is a process's connection serving registered Go functions and
// hosting actors of registered classes.
type Worker struct {
	client  *Client
	ctx     context.Context
	cancel  context.CancelFunc
	names   []string
	classes []string
	wg      sync.WaitGroup
	done    chan struct{}
	err     error
	// Tasks go to a queue served by a pool of goroutines, started as
	// needed and kept (with their grown stacks) between tasks. A goroutine
	// that finishes a task takes the next one queued, without a hand-off;
	// an idle one is woken only when no goroutine is searching the queue
	// already, and one that takes a task wakes another if tasks are left
	// and none searches: every queued task soon has a goroutine of its own
	// (one that blocks holds up no other), yet a burst of short tasks is
	// run by about as many goroutines as there are CPUs. Idle goroutines
	// wait on their own channel; the one idle last is woken first.
	poolMu    sync.Mutex
	queue     []*pb.ExecuteTask
	idle      []*poolWorker
	searching int
	poolDone  bool
	running   atomic.Int64
	// The actors this process hosts, by id.
	actorsMu sync.Mutex
	actors   map[core.ActorID]*hostedActor
}

type clientKey struct{}

// ClientFromContext returns the client of the worker running the task
// whose context ctx is (nil outside a task), for calls made by a task.
func ClientFromContext(ctx context.Context) *Client {
	c, _ := ctx.Value(clientKey{}).(*Client)
	return c
}

// ServeWorker connects to the node, serves the registered functions
// (ServeFunctions{language: GO}) and runs the tasks it is sent, until ctx
// ends (then it returns nil) or the connection to the node breaks.
// Tasks still running when it stops are run again elsewhere by the node,
// within their retries.
func ServeWorker(ctx context.Context, opts ServeOptions) error {
	w, err := StartWorker(ctx, opts)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		w.Stop()
		return nil
	case <-w.done:
		return w.err
	}
}

// StartWorker is ServeWorker that returns once the node knows the worker
// serves its functions (calls made after it returns find them).
func StartWorker(ctx context.Context, opts ServeOptions) (*Worker, error) {
	names, classes := opts.Names, opts.ActorClasses
	if len(names) == 0 && len(classes) == 0 {
		names, classes = worker.Names(), worker.ClassNames()
	}
	if len(names) == 0 && len(classes) == 0 {
		return nil, errors.New("ember: nothing to serve (call ember.Register or ember.RegisterActor first)")
	}
	for _, n := range names {
		if worker.Lookup(n) == nil {
			return nil, fmt.Errorf("ember: %q is not a registered function", n)
		}
	}
	for _, n := range classes {
		if worker.LookupClass(n) == nil {
			return nil, fmt.Errorf("ember: %q is not a registered actor class", n)
		}
	}
	concurrency := opts.Concurrency
	if concurrency <= 0 {
		concurrency = runtime.NumCPU()
	}
	rt, node, err := connect(ctx, opts.Options)
	if err != nil {
		return nil, err
	}
	w := &Worker{client: &Client{rt: rt, node: node}, names: names, classes: classes, done: make(chan struct{}),
		actors: make(map[core.ActorID]*hostedActor)}
	w.ctx, w.cancel = context.WithCancel(context.WithValue(context.Background(), clientKey{}, w.client))
	rt.SetExecutor(w.execute)
	rt.SetActorDropper(w.dropActor)
	rt.Send(&pb.ClientOp{Op: &pb.ClientOp_ServeFunctions{ServeFunctions: &pb.ServeFunctions{
		Language:     pb.Language_GO,
		Names:        names,
		Concurrency:  uint32(concurrency),
		ActorClasses: classes,
	}}})
	// The node handles a connection's ops in order: once this request is
	// answered, it has taken the ServeFunctions before it.
	if _, err := rt.ClusterStatus(ctx); err != nil {
		rt.Close()
		return nil, fmt.Errorf("ember: start serving: %w", err)
	}
	go func() {
		<-rt.Dead()
		w.err = rt.Err()
		if errors.Is(w.err, core.ErrClosed) && w.ctx.Err() != nil {
			w.err = nil
		}
		w.cancel()
		w.stopPool()
		close(w.done)
	}()
	return w, nil
}

// Client is the worker's connection, usable for calls and puts.
func (w *Worker) Client() *Client { return w.client }

// Names are the functions it serves.
func (w *Worker) Names() []string { return append([]string{}, w.names...) }

// ActorClasses are the actor classes it hosts.
func (w *Worker) ActorClasses() []string { return append([]string{}, w.classes...) }

// Done is closed when the worker has stopped.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Err says why the worker stopped (nil after Stop).
func (w *Worker) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Stop disconnects the worker (tasks it runs are retried elsewhere by the
// node) and waits until it has stopped.
func (w *Worker) Stop() {
	w.cancel()
	w.client.closeFlight()
	w.client.rt.Close()
	<-w.done
}

// Drain waits for the tasks running now to finish and their results to be
// sent, then stops.
func (w *Worker) Drain() {
	w.wg.Wait()
	w.Stop()
}

// execute takes a task from the node (on the connection's reader, in the
// order sent). Function calls and actor creations go to the pool; an
// actor's calls to its queue.
func (w *Worker) execute(t *pb.ExecuteTask) {
	w.wg.Add(1)
	w.running.Add(1)
	if spec := t.GetSpec(); spec.GetActorCreation() != nil {
		w.actorArriving(t)
	} else if len(spec.GetActorId()) > 0 {
		w.actorCall(t)
		return
	}
	w.poolMu.Lock()
	w.queue = append(w.queue, t)
	if w.searching > 0 {
		w.poolMu.Unlock()
		return
	}
	pw := w.wakeLocked()
	w.poolMu.Unlock()
	w.signal(pw)
}

// poolWorker is a goroutine of the pool; ch wakes it when idle (false:
// the worker stopped).
type poolWorker struct{ ch chan bool }

// wakeLocked counts one more goroutine searching the queue: the one idle
// last (returned, for signal to wake), or a new one (nil). poolMu held.
func (w *Worker) wakeLocked() *poolWorker {
	w.searching++
	if n := len(w.idle); n > 0 {
		pw := w.idle[n-1]
		w.idle[n-1] = nil
		w.idle = w.idle[:n-1]
		return pw
	}
	return nil
}

// signal wakes pw, or starts a goroutine (pw nil). poolMu not held.
func (w *Worker) signal(pw *poolWorker) {
	if pw != nil {
		pw.ch <- true
		return
	}
	go w.loop(&poolWorker{ch: make(chan bool, 1)})
}

// loop is a goroutine of the pool. It starts searching (counted in
// w.searching).
func (w *Worker) loop(pw *poolWorker) {
	w.poolMu.Lock()
	for {
		if len(w.queue) == 0 {
			w.searching--
			if w.poolDone {
				w.poolMu.Unlock()
				return
			}
			w.idle = append(w.idle, pw)
			w.poolMu.Unlock()
			if !<-pw.ch {
				return
			}
			w.poolMu.Lock()
			continue
		}
		t := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.searching--
		var next *poolWorker
		wake := len(w.queue) > 0 && w.searching == 0
		if wake {
			next = w.wakeLocked()
		}
		w.poolMu.Unlock()
		if wake {
			w.signal(next)
		}
		w.run(t)
		w.wg.Done()
		w.poolMu.Lock()
		w.searching++
	}
}

// stopPool ends the idle goroutines of the pool (and the others once the
// queue is empty).
func (w *Worker) stopPool() {
	w.poolMu.Lock()
	defer w.poolMu.Unlock()
	w.poolDone = true
	for _, pw := range w.idle {
		pw.ch <- false
	}
	w.idle = nil
}

func (w *Worker) run(t *pb.ExecuteTask) {
	spec := t.Spec
	if spec.GetActorCreation() != nil {
		w.construct(spec)
		return
	}
	name := spec.GetFunction().GetName()
	f := worker.Lookup(name)
	if f == nil {
		w.fail(spec, name, &core.TaskError{Kind: core.KindUnknownFunction, Message: fmt.Sprintf("no Go function is registered as %q in this worker", name)})
		return
	}
	w.runTask(spec, name, func(args []worker.Arg) (any, error) { return f.Call(w.ctx, args) })
}

// finish answers a task with its returns.
func (w *Worker) finish(spec *pb.TaskSpec, returns []*pb.ObjectValue) {
	w.send(pb.NewTaskFinishedOp(spec.TaskId, returns))
}

// send sends a task's TaskFinished op.
func (w *Worker) send(op *pb.ClientOp) {
	rt := w.client.rt
	if w.running.Add(-1) == 0 {
		// The only task running: nothing to batch with, write it now.
		rt.SendNow(op)
	} else {
		rt.Send(op)
	}
}

// fail answers a task with te in every return.
func (w *Worker) fail(spec *pb.TaskSpec, name string, te *core.TaskError) {
	if te.FunctionName == "" {
		te.FunctionName = name
	}
	te.TaskID = spec.TaskId
	if te.Language == core.LanguageUnspecified {
		te.Language = core.Go
	}
	v := core.ErrorValue(te.ToProto())
	returns := make([]*pb.ObjectValue, spec.NumReturns)
	for i := range returns {
		returns[i] = v
	}
	w.finish(spec, returns)
}

// failErr answers a task with err (a *TaskError, or any error as a
// TASK_FAILED of its type).
func (w *Worker) failErr(spec *pb.TaskSpec, name string, err error) {
	var te *core.TaskError
	if !errors.As(err, &te) {
		te = &core.TaskError{Kind: core.KindTaskFailed, TypeName: fmt.Sprintf("%T", err), Message: err.Error()}
	}
	w.fail(spec, name, te)
}

// runTask decodes spec's arguments, runs call with them and answers the
// task with its result (or its failure).
func (w *Worker) runTask(spec *pb.TaskSpec, name string, call func([]worker.Arg) (any, error)) {
	rt := w.client.rt
	var task core.TaskID
	copy(task[:], spec.TaskId)
	n := int(spec.NumReturns)
	args := make([]worker.Arg, len(spec.Args))
	var dones []func()
	defer func() {
		for _, done := range dones {
			done()
		}
	}()
	for i, a := range spec.Args {
		if a.Keyword != "" {
			w.fail(spec, name, &core.TaskError{Kind: core.KindTaskFailed, TypeName: "ember.ArgumentError",
				Message: fmt.Sprintf("%s got the keyword argument %q: Go functions take positional arguments only", name, a.Keyword)})
			return
		}
		v := a.Value
		if v == nil {
			w.fail(spec, name, &core.TaskError{Kind: core.KindTaskFailed, TypeName: "ember.ArgumentError",
				Message: fmt.Sprintf("argument %d of %s arrived without a value", i, name)})
			return
		}
		switch body := v.Body.(type) {
		case *pb.ObjectValue_InlineData:
			if v.Format == pb.ValueFormat_ERROR {
				// An argument that failed: this task fails with its error.
				w.fail(spec, name, core.ErrorFromValue(body.InlineData))
				return
			}
			args[i] = worker.Arg{Format: v.Format, Data: body.InlineData}
		case *pb.ObjectValue_Shm:
			if len(a.ObjectRef) != 20 {
				w.fail(spec, name, &core.TaskError{Kind: core.KindTaskFailed, TypeName: "ember.ArgumentError",
					Message: fmt.Sprintf("argument %d of %s is in shared memory without its object id", i, name)})
				return
			}
			var id core.ObjectID
			copy(id[:], a.ObjectRef)
			data, done, err := rt.ReadGrant(id, body.Shm)
			if err != nil {
				w.fail(spec, name, &core.TaskError{Kind: core.KindTaskFailed, TypeName: "ember.ArgumentError", Message: err.Error()})
				return
			}
			dones = append(dones, done)
			args[i] = worker.Arg{Format: v.Format, Data: data}
		default:
			args[i] = worker.Arg{Format: v.Format}
		}
	}
	result, err := call(args)
	if err != nil {
		w.failErr(spec, name, err)
		return
	}
	// One return (the common case) is encoded here, and sent in one
	// allocation when inline.
	var first struct {
		format pb.ValueFormat
		data   []byte
		err    error
	}
	if n == 1 {
		first.format, first.data, first.err = values.Encode(result)
		if first.err == nil && !(len(first.data) > rt.MaxInline && rt.Local()) {
			w.send(pb.NewTaskFinishedInlineOp(spec.TaskId, first.format, first.data))
			return
		}
	}
	results := []any{result}
	if n != 1 {
		split, err := splitReturns(result, n)
		if err != nil {
			w.fail(spec, name, &core.TaskError{Kind: core.KindTaskFailed, TypeName: "ember.ReturnError", Message: err.Error()})
			return
		}
		results = split
	}
	returns := make([]*pb.ObjectValue, n)
	for i, r := range results {
		var format pb.ValueFormat
		var data []byte
		var err error
		if n == 1 {
			format, data, err = first.format, first.data, first.err
		} else {
			format, data, err = values.Encode(r)
		}
		if err != nil {
			w.fail(spec, name, &core.TaskError{Kind: core.KindTaskFailed, TypeName: "ember.ReturnError",
				Message: fmt.Sprintf("the result of %s cannot be encoded: %v", name, err)})
			return
		}
		if len(data) > rt.MaxInline && rt.Local() {
			v, err := rt.WriteShm(w.ctx, core.ReturnID(task, uint32(i)), format, data)
			if err != nil {
				w.fail(spec, name, &core.TaskError{Kind: core.KindObjectStoreFull, Message: fmt.Sprintf("the result of %s (%d bytes): %v", name, len(data), err)})
				return
			}
			rt.CountShmReturn()
			returns[i] = v
			continue
		}
		returns[i] = &pb.ObjectValue{Format: format, Body: &pb.ObjectValue_InlineData{InlineData: data}}
	}
	w.finish(spec, returns)
}

// splitReturns spreads a slice or array result over n returns.
func splitReturns(result any, n int) ([]any, error) {
	if n == 0 {
		return nil, nil
	}
	items, ok := result.([]any)
	if !ok {
		var generic []any
		if err := values.Decode(pb.ValueFormat_MSGPACK, mustMarshal(result), &generic); err != nil {
			return nil, fmt.Errorf("the task wants %d returns: return a slice of %d values (%T)", n, n, result)
		}
		items = generic
	}
	if len(items) != n {
		return nil, fmt.Errorf("the task wants %d returns and the function returned %d values", n, len(items))
	}
	return items, nil
}

func mustMarshal(v any) []byte {
	data, err := Marshal(v)
	if err != nil {
		return []byte{0xc1} // invalid: decoding fails
	}
	return data
}
