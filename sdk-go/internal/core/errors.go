package core

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/ember-run/ember/sdk-go/internal/pb"
)

// Language is the language of a function, worker or client.
type Language int32

// The languages of the wire contract (ember.v1.Language).
const (
	LanguageUnspecified Language = Language(pb.Language_LANGUAGE_UNSPECIFIED)
	Python              Language = Language(pb.Language_PYTHON)
	Go                  Language = Language(pb.Language_GO)
	Rust                Language = Language(pb.Language_RUST)
)

func (l Language) String() string {
	switch l {
	case Python:
		return "Python"
	case Go:
		return "Go"
	case Rust:
		return "Rust"
	}
	return fmt.Sprintf("Language(%d)", int32(l))
}

// ErrorKind says why a task or an object failed (ember.v1.ErrorKind).
type ErrorKind int32

// The error kinds of the wire contract.
const (
	KindUnspecified        ErrorKind = ErrorKind(pb.ErrorKind_ERROR_KIND_UNSPECIFIED)
	KindTaskFailed         ErrorKind = ErrorKind(pb.ErrorKind_TASK_FAILED)
	KindWorkerCrashed      ErrorKind = ErrorKind(pb.ErrorKind_WORKER_CRASHED)
	KindTaskCancelled      ErrorKind = ErrorKind(pb.ErrorKind_TASK_CANCELLED)
	KindObjectLost         ErrorKind = ErrorKind(pb.ErrorKind_OBJECT_LOST)
	KindUnknownFunction    ErrorKind = ErrorKind(pb.ErrorKind_UNKNOWN_FUNCTION)
	KindInvalidArgument    ErrorKind = ErrorKind(pb.ErrorKind_INVALID_ARGUMENT)
	KindObjectStoreFull    ErrorKind = ErrorKind(pb.ErrorKind_OBJECT_STORE_FULL)
	KindFunctionLoadFailed ErrorKind = ErrorKind(pb.ErrorKind_FUNCTION_LOAD_FAILED)
	KindWorkerStartFailed  ErrorKind = ErrorKind(pb.ErrorKind_WORKER_START_FAILED)
	KindInternal           ErrorKind = ErrorKind(pb.ErrorKind_INTERNAL)
	KindUnauthenticated    ErrorKind = ErrorKind(pb.ErrorKind_UNAUTHENTICATED)
	KindGetTimeout         ErrorKind = ErrorKind(pb.ErrorKind_GET_TIMEOUT)
	KindActorDied          ErrorKind = ErrorKind(pb.ErrorKind_ACTOR_DIED)
	KindNotFound           ErrorKind = ErrorKind(pb.ErrorKind_NOT_FOUND)
	KindAlreadyExists      ErrorKind = ErrorKind(pb.ErrorKind_ALREADY_EXISTS)
	KindNodeDied           ErrorKind = ErrorKind(pb.ErrorKind_NODE_DIED)
)

func (k ErrorKind) String() string {
	if name, ok := pb.ErrorKind_name[int32(k)]; ok {
		return name
	}
	return fmt.Sprintf("ErrorKind(%d)", int32(k))
}

// Sentinel errors: a *TaskError of the matching kind satisfies errors.Is
// with them.
var (
	ErrTimeout         = errors.New("ember: timed out")
	ErrActorDied       = errors.New("ember: actor died")
	ErrObjectLost      = errors.New("ember: object lost")
	ErrUnauthenticated = errors.New("ember: unauthenticated (wrong or missing cluster token)")
	ErrUnknownFunction = errors.New("ember: unknown function")
	ErrWorkerCrashed   = errors.New("ember: worker crashed")
	ErrTaskCancelled   = errors.New("ember: task cancelled")
	ErrNodeDied        = errors.New("ember: node died")
	ErrObjectStoreFull = errors.New("ember: object store full")
	ErrInvalidArgument = errors.New("ember: invalid argument")
	ErrActorNotFound   = errors.New("ember: no actor of that name")
	ErrNameTaken       = errors.New("ember: the name is already taken")
	// ErrClosed: the client was closed, or its connection to the node broke.
	ErrClosed = errors.New("ember: connection to the node closed")
	// ErrReleased: the ObjectRef was released before the call.
	ErrReleased = errors.New("ember: object reference released")
)

var sentinels = map[ErrorKind]error{
	KindGetTimeout:      ErrTimeout,
	KindActorDied:       ErrActorDied,
	KindObjectLost:      ErrObjectLost,
	KindUnauthenticated: ErrUnauthenticated,
	KindUnknownFunction: ErrUnknownFunction,
	KindWorkerCrashed:   ErrWorkerCrashed,
	KindTaskCancelled:   ErrTaskCancelled,
	KindNodeDied:        ErrNodeDied,
	KindObjectStoreFull: ErrObjectStoreFull,
	KindInvalidArgument: ErrInvalidArgument,
	KindNotFound:        ErrActorNotFound,
	KindAlreadyExists:   ErrNameTaken,
}

// TaskError is a failure reported by ember: a remote function that failed
// (Kind TASK_FAILED, with the remote type, message and traceback), or a
// system failure (Kind says which; errors.Is matches the sentinel errors).
type TaskError struct {
	Kind         ErrorKind
	Language     Language
	TypeName     string
	Message      string
	Traceback    string
	FunctionName string
	TaskID       []byte
	// Payload is language-specific (Python: the pickled exception).
	Payload []byte
}

func (e *TaskError) Error() string {
	var b strings.Builder
	if e.Kind == KindTaskFailed {
		b.WriteString("task failed")
		if e.FunctionName != "" {
			fmt.Fprintf(&b, " in %s function %s", e.Language, e.FunctionName)
		}
		b.WriteString(": ")
		if e.TypeName != "" {
			b.WriteString(e.TypeName)
			b.WriteString(": ")
		}
		b.WriteString(e.Message)
		return b.String()
	}
	b.WriteString(e.Kind.String())
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

// Is matches the sentinel error of the kind.
func (e *TaskError) Is(target error) bool {
	s, ok := sentinels[e.Kind]
	return ok && s == target
}

// FromProto converts a wire TaskError.
func FromProto(te *pb.TaskError) *TaskError {
	if te == nil {
		return &TaskError{Kind: KindInternal, Message: "error without details"}
	}
	return &TaskError{
		Kind:         ErrorKind(te.Kind),
		Language:     Language(te.Language),
		TypeName:     te.TypeName,
		Message:      te.Message,
		Traceback:    te.Traceback,
		FunctionName: te.FunctionName,
		TaskID:       te.TaskId,
		Payload:      te.Payload,
	}
}

// ToProto converts to the wire form.
func (e *TaskError) ToProto() *pb.TaskError {
	return &pb.TaskError{
		Kind:         pb.ErrorKind(e.Kind),
		Language:     pb.Language(e.Language),
		TypeName:     e.TypeName,
		Message:      e.Message,
		Traceback:    e.Traceback,
		FunctionName: e.FunctionName,
		TaskId:       e.TaskID,
		Payload:      e.Payload,
	}
}

// ErrorFromValue decodes an ERROR value's TaskError.
func ErrorFromValue(data []byte) *TaskError {
	var te pb.TaskError
	if err := proto.Unmarshal(data, &te); err != nil {
		return &TaskError{Kind: KindInternal, Message: "malformed error value: " + err.Error()}
	}
	return FromProto(&te)
}

// ErrorValue is the ERROR value holding te.
func ErrorValue(te *pb.TaskError) *pb.ObjectValue {
	data, _ := proto.Marshal(te)
	return &pb.ObjectValue{
		Format: pb.ValueFormat_ERROR,
		Body:   &pb.ObjectValue_InlineData{InlineData: data},
	}
}

// timeoutError is returned when a context deadline ends a wait: it is both
// ErrTimeout and context.DeadlineExceeded.
type timeoutError struct {
	what  string
	cause error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("ember: timed out waiting for %s: %v", e.what, e.cause)
}

func (e *timeoutError) Is(target error) bool { return target == ErrTimeout }

func (e *timeoutError) Unwrap() error { return e.cause }
