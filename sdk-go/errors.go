package ember

import "github.com/ember-run/ember/sdk-go/internal/core"

// TaskError is a failure reported by ember. A remote function that failed
// has Kind KindTaskFailed and carries the remote TypeName, Message and
// Traceback; other kinds are system failures, matched by errors.Is with
// the sentinel errors below (ErrUnknownFunction, ErrWorkerCrashed, ...).
type TaskError = core.TaskError

// ErrorKind says why a task or an object failed.
type ErrorKind = core.ErrorKind

// The error kinds (ember.v1.ErrorKind).
const (
	KindTaskFailed         = core.KindTaskFailed
	KindWorkerCrashed      = core.KindWorkerCrashed
	KindTaskCancelled      = core.KindTaskCancelled
	KindObjectLost         = core.KindObjectLost
	KindUnknownFunction    = core.KindUnknownFunction
	KindInvalidArgument    = core.KindInvalidArgument
	KindObjectStoreFull    = core.KindObjectStoreFull
	KindFunctionLoadFailed = core.KindFunctionLoadFailed
	KindWorkerStartFailed  = core.KindWorkerStartFailed
	KindInternal           = core.KindInternal
	KindUnauthenticated    = core.KindUnauthenticated
	KindGetTimeout         = core.KindGetTimeout
	KindActorDied          = core.KindActorDied
	KindNotFound           = core.KindNotFound
	KindAlreadyExists      = core.KindAlreadyExists
	KindNodeDied           = core.KindNodeDied
)

// Sentinel errors, for errors.Is. A *TaskError of the matching kind is
// each of them; ErrTimeout also matches a Get or Wait ended by a context
// deadline (which is context.DeadlineExceeded too).
var (
	ErrTimeout         = core.ErrTimeout
	ErrActorDied       = core.ErrActorDied
	ErrObjectLost      = core.ErrObjectLost
	ErrUnauthenticated = core.ErrUnauthenticated
	ErrUnknownFunction = core.ErrUnknownFunction
	ErrWorkerCrashed   = core.ErrWorkerCrashed
	ErrTaskCancelled   = core.ErrTaskCancelled
	ErrNodeDied        = core.ErrNodeDied
	ErrObjectStoreFull = core.ErrObjectStoreFull
	ErrInvalidArgument = core.ErrInvalidArgument
	// ErrActorNotFound: GetActor found no live actor of that name.
	ErrActorNotFound = core.ErrActorNotFound
	// ErrNameTaken: CreateActorWith a name a live actor has (without
	// GetIfExists).
	ErrNameTaken = core.ErrNameTaken
	// ErrClosed: the client was closed, or its connection to the node broke.
	ErrClosed = core.ErrClosed
	// ErrReleased: the ObjectRef was released before the call.
	ErrReleased = core.ErrReleased
)
