package ember

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"sync"

	"github.com/ember-run/ember/sdk-go/internal/core"
	"github.com/ember-run/ember/sdk-go/internal/pb"
	"github.com/ember-run/ember/sdk-go/internal/worker"
)

// RegisterActor makes the actor class className creatable from any
// language once a worker hosts it (ServeWorker). constructor makes an
// instance:
//
//	func(args...) (*T, error)   func(args...) *T
//
// optionally with a leading context.Context (the actor's context: it ends
// when the actor is dropped or the worker stops). The methods of the
// class are the exported methods of *T with the shapes Register takes; a
// call names one as in Go ("Incr") or with its first letter in lower case
// ("incr"). A call's arguments and result are decoded and encoded as for
// functions; a returned error or a panic fails that call (a *TaskError)
// and the actor goes on.
//
// An actor's calls run one at a time in the order they were submitted
// (ActorOptions.MaxConcurrency > 1: up to that many at once), on their own
// goroutines outside ServeOptions.Concurrency; different actors run in
// parallel.
//
// RegisterActor panics if constructor is not such a function, *T has no
// method to call, or className is taken.
func RegisterActor(className string, constructor any) {
	if err := worker.RegisterClass(className, constructor); err != nil {
		panic(err)
	}
}

// RegisteredActors lists the registered actor classes, sorted.
func RegisteredActors() []string { return worker.ClassNames() }

// hostedActor is an actor this worker hosts. Its calls queue here in the
// order they arrive and run on up to limit goroutines (drain), once the
// constructor has made the instance.
type hostedActor struct {
	id           core.ActorID
	creationTask []byte
	limit        int
	// ctx ends when the actor is dropped or the worker stops.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	state    actorState
	class    *worker.Class
	instance reflect.Value // a *T once ready
	queue    []*pb.ExecuteTask
	running  int // drain goroutines
	busy     int // of them, those inside a call (the others are about to take one)
}

type actorState int

const (
	actorConstructing actorState = iota
	actorReady
	actorGone // the constructor failed, or the node dropped it
)

// actorArriving notes an actor whose creation arrived (on the reader, so
// that calls arriving while its constructor runs queue behind it).
func (w *Worker) actorArriving(t *pb.ExecuteTask) {
	c := t.Spec.ActorCreation
	var id core.ActorID
	if len(c.ActorId) != len(id) {
		return // construct answers it
	}
	copy(id[:], c.ActorId)
	a := &hostedActor{id: id, creationTask: t.Spec.TaskId, limit: max(int(c.MaxConcurrency), 1)}
	a.ctx, a.cancel = context.WithCancel(w.ctx)
	w.actorsMu.Lock()
	old := w.actors[id]
	w.actors[id] = a
	w.actorsMu.Unlock()
	if old != nil {
		// Made again here (a restart): the old instance is gone.
		w.discard(old)
	}
}

// construct runs an actor's constructor (on the pool) and answers its
// creation: nil, or the constructor's error.
func (w *Worker) construct(spec *pb.TaskSpec) {
	className := spec.GetFunction().GetName()
	var id core.ActorID
	if raw := spec.ActorCreation.ActorId; len(raw) == len(id) {
		copy(id[:], raw)
	} else {
		w.fail(spec, className, &core.TaskError{Kind: core.KindInvalidArgument,
			Message: fmt.Sprintf("the creation of a %s actor has an actor id of %d bytes, not 16", className, len(raw))})
		return
	}
	w.actorsMu.Lock()
	a := w.actors[id]
	w.actorsMu.Unlock()
	if a == nil || !bytes.Equal(a.creationTask, spec.TaskId) {
		w.fail(spec, className, &core.TaskError{Kind: core.KindActorDied,
			Message: fmt.Sprintf("the %s actor %x was dropped before its constructor ran", className, id[:])})
		return
	}
	class := worker.LookupClass(className)
	if class == nil {
		te := &core.TaskError{Kind: core.KindUnknownFunction, Language: core.Go, FunctionName: className,
			Message: fmt.Sprintf("no Go actor class is registered as %q in this worker (pid %d)", className, os.Getpid())}
		w.actorFailed(a, te)
		w.fail(spec, className, te)
		return
	}
	var instance reflect.Value
	var ctorErr error
	w.runTask(spec, className, func(args []worker.Arg) (any, error) {
		v, err := class.New(a.ctx, args)
		instance, ctorErr = v, err
		return nil, err
	})
	if !instance.IsValid() {
		te, ok := ctorErr.(*core.TaskError)
		if !ok {
			te = &core.TaskError{Kind: core.KindTaskFailed, Language: core.Go, FunctionName: className,
				TypeName: "ember.ArgumentError", Message: fmt.Sprintf("the arguments of the %s constructor could not be read", className)}
		}
		w.actorFailed(a, te)
		return
	}
	a.mu.Lock()
	if a.state == actorConstructing {
		a.class, a.instance, a.state = class, instance, actorReady
		a.startLocked(w)
	}
	a.mu.Unlock()
}

// actorCall queues a method call for its actor (on the reader: in the
// order the node sent them).
func (w *Worker) actorCall(t *pb.ExecuteTask) {
	spec := t.Spec
	var id core.ActorID
	copy(id[:], spec.ActorId)
	var a *hostedActor
	if len(spec.ActorId) == len(id) {
		w.actorsMu.Lock()
		a = w.actors[id]
		w.actorsMu.Unlock()
	}
	if a != nil {
		a.mu.Lock()
		if a.state != actorGone {
			a.queue = append(a.queue, t)
			if a.state == actorReady {
				a.startLocked(w)
			}
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
	}
	w.fail(spec, spec.Name, &core.TaskError{Kind: core.KindActorDied,
		Message: fmt.Sprintf("this Go worker (pid %d) hosts no actor %x of class %q (call of %q)",
			os.Getpid(), spec.ActorId, spec.GetFunction().GetName(), spec.MethodName)})
	w.wg.Done()
}

// startLocked starts drain goroutines for queued calls, up to the limit
// (a.mu held). A drain inside a call does not count as one for the queue:
// the queue waiting for it would not run beside it.
func (a *hostedActor) startLocked(w *Worker) {
	for a.running < a.limit && a.running-a.busy < len(a.queue) {
		a.running++
		go a.drain(w)
	}
}

// drain runs queued calls, oldest first, until none is left.
func (a *hostedActor) drain(w *Worker) {
	a.mu.Lock()
	for len(a.queue) > 0 && a.state == actorReady {
		t := a.queue[0]
		a.queue[0] = nil
		a.queue = a.queue[1:]
		a.busy++
		a.mu.Unlock()
		w.callMethod(a, t)
		w.wg.Done()
		a.mu.Lock()
		a.busy--
	}
	a.running--
	a.mu.Unlock()
}

// callMethod runs one call of the actor's method and answers it.
func (w *Worker) callMethod(a *hostedActor, t *pb.ExecuteTask) {
	spec := t.Spec
	m, err := a.class.Method(spec.MethodName)
	if err != nil {
		name := spec.Name
		if name == "" {
			name = a.class.Name + "." + spec.MethodName
		}
		w.fail(spec, name, &core.TaskError{Kind: core.KindUnknownFunction, Message: err.Error()})
		return
	}
	w.runTask(spec, m.Name, func(args []worker.Arg) (any, error) {
		return m.CallMethod(a.ctx, a.instance, args)
	})
}

// dropActor is the node's drop_actor: the instance is dropped; its calls
// not started are not answered (the node has failed them or sends them
// elsewhere), those running finish (their answers are ignored).
func (w *Worker) dropActor(k *pb.KillActor) {
	var id core.ActorID
	if len(k.ActorId) != len(id) {
		return
	}
	copy(id[:], k.ActorId)
	w.actorsMu.Lock()
	a := w.actors[id]
	delete(w.actors, id)
	w.actorsMu.Unlock()
	if a != nil {
		w.discard(a)
	}
}

// discard ends an actor that is no longer in w.actors.
func (w *Worker) discard(a *hostedActor) {
	a.mu.Lock()
	a.state = actorGone
	queued := a.queue
	a.queue = nil
	a.mu.Unlock()
	a.cancel()
	for range queued {
		w.running.Add(-1)
		w.wg.Done()
	}
}

// actorFailed ends an actor whose constructor failed: calls that arrived
// meanwhile get its error.
func (w *Worker) actorFailed(a *hostedActor, te *core.TaskError) {
	w.actorsMu.Lock()
	if w.actors[a.id] == a {
		delete(w.actors, a.id)
	}
	w.actorsMu.Unlock()
	a.mu.Lock()
	gone := a.state == actorGone
	a.state = actorGone
	queued := a.queue
	a.queue = nil
	a.mu.Unlock()
	a.cancel()
	if gone {
		for range queued {
			w.running.Add(-1)
			w.wg.Done()
		}
		return
	}
	for _, t := range queued {
		copied := *te
		w.fail(t.Spec, t.Spec.Name, &copied)
		w.wg.Done()
	}
}
