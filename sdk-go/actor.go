package ember

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"

	"github.com/ember-run/ember/sdk-go/internal/pb"
)

// Class names an actor class by language and registered name: a Go or
// Rust class served by a worker (RegisterActor + ServeWorker in Go), or a
// Python actor class exported by name
// (ember.cross_language.export(Cls, "name")).
type Class struct {
	Language Language
	Name     string
}

// ActorID identifies an actor: 16 random bytes made by its creator.
type ActorID [16]byte

// String is the lowercase hex form, as the Rust core prints ids.
func (id ActorID) String() string { return hex.EncodeToString(id[:]) }

// ActorOptions tune an actor's creation.
type ActorOptions struct {
	// Name makes the actor findable with GetActor (empty: anonymous).
	Name string
	// Namespace of the name (empty: the client's Options.Namespace, and if
	// that is empty too an anonymous one of its own, where other clients
	// cannot find the name).
	Namespace string
	// MaxRestarts is how many times the actor is made again (its
	// constructor run with the same arguments, on another process serving
	// the class) after the process hosting it dies; -1: unlimited.
	MaxRestarts int
	// MaxTaskRetries is how many times a call in flight when the hosting
	// process died is sent again to the restarted actor; -1: unlimited.
	// Otherwise such a call fails (ErrActorDied or ErrWorkerCrashed).
	MaxTaskRetries int
	// MaxConcurrency is how many calls the actor runs at once (0 or 1: one
	// at a time, in the order they were submitted).
	MaxConcurrency int
	// Detached: the actor outlives the client that made it, until killed.
	// Otherwise it ends when its creator disconnects.
	Detached bool
	// GetIfExists: with a Name that a live actor has, return that actor
	// instead of failing with ErrNameTaken.
	GetIfExists bool
}

// Actor is a handle to an actor: its calls run in its instance, one at a
// time in the order submitted (unless its MaxConcurrency allows more).
// Handles are plain values: copying one, or dropping it, does not affect
// the actor.
type Actor struct {
	c              *Client
	id             ActorID
	class          Class
	maxTaskRetries int
}

// CreateActor makes an actor of class with the constructor arguments args
// (encoded as for Call) and returns its handle once the node has accepted
// it; the constructor runs in the background. A constructor that fails
// makes every call of the actor fail with its error.
func (c *Client) CreateActor(ctx context.Context, class Class, args ...any) (*Actor, error) {
	return c.CreateActorWith(ctx, class, ActorOptions{}, args...)
}

// CreateActorWith is CreateActor with options. A name a live actor has
// fails with ErrNameTaken, unless opts.GetIfExists (then it returns that
// actor, and args are not used).
func (c *Client) CreateActorWith(ctx context.Context, class Class, opts ActorOptions, args ...any) (*Actor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.rt.Err(); err != nil {
		return nil, err
	}
	if class.Name == "" {
		return nil, errors.New("ember: CreateActor of a Class without a name")
	}
	if opts.MaxConcurrency < 0 {
		return nil, fmt.Errorf("ember: MaxConcurrency must be >= 0, got %d", opts.MaxConcurrency)
	}
	taskArgs, temps, err := c.encodeArgs(ctx, class.Name, args)
	if err != nil {
		return nil, err
	}
	var id ActorID
	_, _ = rand.Read(id[:])
	spec := &pb.TaskSpec{
		Function:      &pb.FunctionDescriptor{Language: pb.Language(class.Language), Name: class.Name},
		Args:          taskArgs,
		NumReturns:    1,
		MaxRetries:    int32(opts.MaxRestarts),
		Name:          class.Name + ".__init__",
		CrossLanguage: true,
		ActorCreation: &pb.ActorCreation{
			ActorId:        id[:],
			Name:           opts.Name,
			Namespace:      opts.Namespace,
			Detached:       opts.Detached,
			MaxRestarts:    int32(opts.MaxRestarts),
			MaxTaskRetries: int32(opts.MaxTaskRetries),
			MaxConcurrency: uint32(opts.MaxConcurrency),
			GetIfExists:    opts.GetIfExists,
			ClassName:      class.Name,
		},
	}
	info, err := c.rt.CreateActor(ctx, spec, temps)
	runtime.KeepAlive(args)
	if err != nil {
		return nil, fmt.Errorf("ember: create actor %s: %w", class.Name, err)
	}
	a := &Actor{c: c, id: id, class: class, maxTaskRetries: opts.MaxTaskRetries}
	if info != nil && len(info.ActorId) == len(id) {
		// get_if_exists: the existing actor.
		copy(a.id[:], info.ActorId)
		a.adopt(info)
	}
	return a, nil
}

// GetActor returns a handle to the live actor named name in namespace
// (empty: the client's namespace); ErrActorNotFound if there is none.
func (c *Client) GetActor(ctx context.Context, name, namespace string) (*Actor, error) {
	if err := c.rt.Err(); err != nil {
		return nil, err
	}
	info, err := c.rt.GetActor(ctx, name, namespace)
	if err != nil {
		return nil, fmt.Errorf("ember: get actor %q: %w", name, err)
	}
	if info == nil || len(info.ActorId) != len(ActorID{}) {
		return nil, fmt.Errorf("ember: get actor %q: the node answered without an actor id", name)
	}
	a := &Actor{c: c}
	copy(a.id[:], info.ActorId)
	a.adopt(info)
	return a, nil
}

// adopt takes the class and retry budget of an existing actor.
func (a *Actor) adopt(info *pb.ActorInfo) {
	if f := info.GetClassFunction(); f != nil && f.Name != "" {
		a.class = Class{Language: Language(f.Language), Name: f.Name}
	}
	if cr := info.GetCreation(); cr != nil {
		a.maxTaskRetries = int(cr.MaxTaskRetries)
	}
}

// KillActor ends the actor: the process hosting it drops its instance.
// With noRestart it is dead for good (its calls fail with ErrActorDied);
// otherwise it is made again if its MaxRestarts allow.
func (c *Client) KillActor(ctx context.Context, a *Actor, noRestart bool) error {
	if a == nil {
		return errors.New("ember: KillActor of a nil actor")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.rt.Err(); err != nil {
		return err
	}
	c.rt.SendNow(&pb.ClientOp{Op: &pb.ClientOp_KillActor{KillActor: &pb.KillActor{ActorId: a.id[:], NoRestart: noRestart}}})
	return nil
}

// ID is the actor's id.
func (a *Actor) ID() ActorID { return a.id }

// Class is the actor's class.
func (a *Actor) Class() Class { return a.class }

// String names the class and the id.
func (a *Actor) String() string { return fmt.Sprintf("Actor(%s, %s)", a.class.Name, a.id) }

// Call calls the actor's method with args (encoded as for Client.Call)
// and returns a reference to its result at once. Calls made through one
// client run in the order they were made. A Go actor's method is named as
// in Go ("Incr") or with its first letter in lower case ("incr"); a
// Python or Rust actor's as in its language.
func (a *Actor) Call(ctx context.Context, method string, args ...any) (ObjectRef, error) {
	c := a.c
	if err := ctx.Err(); err != nil {
		return ObjectRef{}, err
	}
	if err := c.rt.Err(); err != nil {
		return ObjectRef{}, err
	}
	if method == "" {
		return ObjectRef{}, errors.New("ember: actor Call without a method name")
	}
	name := a.class.Name + "." + method
	taskArgs, temps, err := c.encodeArgs(ctx, name, args)
	if err != nil {
		return ObjectRef{}, err
	}
	spec := &pb.TaskSpec{
		Function:      &pb.FunctionDescriptor{Language: pb.Language(a.class.Language), Name: a.class.Name},
		Args:          taskArgs,
		NumReturns:    1,
		MaxRetries:    int32(a.maxTaskRetries),
		Name:          name,
		CrossLanguage: true,
		ActorId:       a.id[:],
		MethodName:    method,
	}
	ids := c.rt.Submit(spec, temps)
	runtime.KeepAlive(args)
	return c.newRef(ids[0]), nil
}
