package ember

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"

	"github.com/ember-run/ember/sdk-go/internal/core"
)

// ObjectRef refers to an object in the cluster: a call's result or a put
// value. Copies refer to the same reference. The object lives while a
// reference to it does: Release drops this one (once, whichever copy calls
// it); an ObjectRef that becomes unreachable is released by the garbage
// collector.
type ObjectRef struct {
	h *refHandle
}

type refHandle struct {
	c        *Client
	id       core.ObjectID
	released atomic.Bool
	cleanup  runtime.Cleanup
}

type releaseArg struct {
	rt *core.Runtime
	id core.ObjectID
}

func (c *Client) newRef(id core.ObjectID) ObjectRef {
	h := &refHandle{c: c, id: id}
	h.cleanup = runtime.AddCleanup(h, func(a releaseArg) { a.rt.Release(a.id) }, releaseArg{c.rt, id})
	return ObjectRef{h: h}
}

// ID is the object's id.
func (r ObjectRef) ID() ObjectID {
	if r.h == nil {
		return ObjectID{}
	}
	return ObjectID(r.h.id)
}

// IsZero says whether r refers to nothing (the zero ObjectRef).
func (r ObjectRef) IsZero() bool { return r.h == nil }

// String is the object id in hex.
func (r ObjectRef) String() string {
	if r.h == nil {
		return "ObjectRef(nil)"
	}
	return "ObjectRef(" + ObjectID(r.h.id).String() + ")"
}

// Get waits for the value and decodes it into out (see Client.Get).
func (r ObjectRef) Get(ctx context.Context, out any) error {
	if r.h == nil {
		return errors.New("ember: Get of a zero ObjectRef")
	}
	return r.h.c.Get(ctx, r, out)
}

// Ready says whether the value (or its error) has arrived, without waiting.
func (r ObjectRef) Ready() bool {
	return r.h != nil && r.h.c.rt.IsReady(r.h.id)
}

// Release drops the reference: once nothing refers to the object, the
// node frees it. Later Gets of this ref fail with ErrReleased.
func (r ObjectRef) Release() {
	if r.h == nil || !r.h.released.CompareAndSwap(false, true) {
		return
	}
	r.h.cleanup.Stop()
	r.h.c.rt.Release(r.h.id)
}

// MarshalMsgpack refuses: an ObjectRef is passed to a call as a top-level
// argument (the callee gets its value), not inside another value.
func (r ObjectRef) MarshalMsgpack() ([]byte, error) {
	return nil, errors.New("ember: an ObjectRef cannot be encoded inside a value; pass it as a top-level argument of Call, or Get its value first")
}
