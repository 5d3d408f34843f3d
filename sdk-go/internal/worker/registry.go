// Package worker holds the Go functions a process serves by name and runs
// one task of them: arguments decoded into the parameter types by
// reflection, the result encoded, a returned error or a panic turned into
// a TaskError.
package worker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"github.com/ember-run/ember/sdk-go/internal/core"
	"github.com/ember-run/ember/sdk-go/internal/pb"
	"github.com/ember-run/ember/sdk-go/internal/values"
)

// Func is a registered function, or an actor class's constructor or
// method.
type Func struct {
	Name     string
	fn       reflect.Value
	params   []reflect.Type // after the receiver and the optional context
	variadic bool
	hasCtx   bool
	// A method: fn's first parameter is the receiver (the instance).
	method bool
	// Results: a value, an error, both, or none.
	hasValue bool
	hasError bool
}

var (
	ctxType = reflect.TypeFor[context.Context]()
	errType = reflect.TypeFor[error]()
)

var (
	mu       sync.RWMutex
	registry = map[string]*Func{}
)

// Register adds fn under name. fn is a func whose parameters are decoded
// from the task's arguments (an optional leading context.Context gets the
// task's context) and whose results are (R, error), R, error or nothing.
func Register(name string, fn any) error {
	if name == "" {
		return errors.New("ember.Register: empty function name")
	}
	f, err := describe(name, fn)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if _, taken := registry[name]; taken {
		return fmt.Errorf("ember.Register: a function is already registered as %q", name)
	}
	registry[name] = f
	return nil
}

// Unregister removes name (for tests).
func Unregister(name string) {
	mu.Lock()
	defer mu.Unlock()
	delete(registry, name)
}

// Lookup returns the function registered as name.
func Lookup(name string) *Func {
	mu.RLock()
	defer mu.RUnlock()
	return registry[name]
}

// Names lists the registered names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func describe(name string, fn any) (*Func, error) {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func || v.IsNil() {
		return nil, fmt.Errorf("ember.Register(%q): %T is not a function", name, fn)
	}
	f, err := describeFunc(name, v, false)
	if err != nil {
		return nil, fmt.Errorf("ember.Register(%q): %w", name, err)
	}
	return f, nil
}

// describeFunc describes v, a func; method: its first parameter is the
// receiver.
func describeFunc(name string, v reflect.Value, method bool) (*Func, error) {
	t := v.Type()
	f := &Func{Name: name, fn: v, variadic: t.IsVariadic(), method: method}
	first := 0
	if method {
		first = 1
	}
	for i := first; i < t.NumIn(); i++ {
		in := t.In(i)
		if i == first && in == ctxType {
			f.hasCtx = true
			continue
		}
		f.params = append(f.params, in)
	}
	switch t.NumOut() {
	case 0:
	case 1:
		if t.Out(0) == errType {
			f.hasError = true
		} else {
			f.hasValue = true
		}
	case 2:
		if t.Out(1) != errType {
			return nil, fmt.Errorf("the second result of %s must be error", t)
		}
		f.hasValue, f.hasError = true, true
	default:
		return nil, fmt.Errorf("%s has more than two results (return a struct or a slice)", t)
	}
	return f, nil
}

// Arg is one argument as it arrived.
type Arg struct {
	Format pb.ValueFormat
	Data   []byte
}

// Call decodes args, runs the function and returns its result. A returned
// error, a decode failure or a panic comes back as a *core.TaskError.
func (f *Func) Call(ctx context.Context, args []Arg) (result any, err error) {
	return f.call(ctx, reflect.Value{}, args)
}

// CallMethod is Call of a method on the instance recv.
func (f *Func) CallMethod(ctx context.Context, recv reflect.Value, args []Arg) (result any, err error) {
	return f.call(ctx, recv, args)
}

func (f *Func) call(ctx context.Context, recv reflect.Value, args []Arg) (result any, err error) {
	in, err := f.decodeArgs(args)
	if err != nil {
		return nil, err
	}
	if f.hasCtx {
		in = append([]reflect.Value{reflect.ValueOf(ctx)}, in...)
	}
	if f.method {
		in = append([]reflect.Value{recv}, in...)
	}
	defer func() {
		if p := recover(); p != nil {
			result = nil
			err = &core.TaskError{
				Kind:         core.KindTaskFailed,
				Language:     core.Go,
				TypeName:     fmt.Sprintf("panic(%T)", p),
				Message:      fmt.Sprint(p),
				Traceback:    string(debug.Stack()),
				FunctionName: f.Name,
			}
		}
	}()
	var out []reflect.Value
	if f.variadic {
		out = f.fn.CallSlice(in)
	} else {
		out = f.fn.Call(in)
	}
	if f.hasError {
		if e, _ := out[len(out)-1].Interface().(error); e != nil {
			return nil, f.failure(e)
		}
	}
	if f.hasValue {
		return out[0].Interface(), nil
	}
	return nil, nil
}

func (f *Func) decodeArgs(args []Arg) ([]reflect.Value, error) {
	fixed := len(f.params)
	if f.variadic {
		fixed--
	}
	if len(args) < fixed || (!f.variadic && len(args) > fixed) {
		want := fmt.Sprintf("%d", fixed)
		if f.variadic {
			want = fmt.Sprintf("at least %d", fixed)
		}
		return nil, f.argError(fmt.Sprintf("%s takes %s arguments, got %d", f.Name, want, len(args)))
	}
	in := make([]reflect.Value, 0, len(f.params))
	for i := 0; i < fixed; i++ {
		v := reflect.New(f.params[i]).Elem()
		if err := values.DecodeValue(args[i].Format, args[i].Data, v); err != nil {
			return nil, f.argError(fmt.Sprintf("argument %d of %s (%s): %v", i, f.Name, f.params[i], err))
		}
		in = append(in, v)
	}
	if f.variadic {
		elem := f.params[fixed].Elem()
		rest := reflect.MakeSlice(f.params[fixed], 0, len(args)-fixed)
		for i := fixed; i < len(args); i++ {
			v := reflect.New(elem).Elem()
			if err := values.DecodeValue(args[i].Format, args[i].Data, v); err != nil {
				return nil, f.argError(fmt.Sprintf("argument %d of %s (%s): %v", i, f.Name, elem, err))
			}
			rest = reflect.Append(rest, v)
		}
		in = append(in, rest)
	}
	return in, nil
}

func (f *Func) argError(msg string) *core.TaskError {
	return &core.TaskError{
		Kind:         core.KindTaskFailed,
		Language:     core.Go,
		TypeName:     "ember.ArgumentError",
		Message:      msg,
		FunctionName: f.Name,
	}
}

// failure describes an error the function returned.
func (f *Func) failure(e error) *core.TaskError {
	var te *core.TaskError
	if errors.As(e, &te) {
		// An ember error from a call this function made: passed on as is,
		// under this function's name when it has none.
		out := *te
		if out.Kind != core.KindTaskFailed {
			// A system failure of the inner call is this function's failure.
			out.TypeName = "ember." + out.Kind.String()
			out.Kind = core.KindTaskFailed
		}
		if out.FunctionName == "" {
			out.FunctionName = f.Name
		}
		return &out
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "error returned by Go function %s:\n", f.Name)
	for cause, depth := e, 0; cause != nil && depth < 32; cause, depth = errors.Unwrap(cause), depth+1 {
		fmt.Fprintf(&tb, "  %T: %v\n", cause, cause)
	}
	return &core.TaskError{
		Kind:         core.KindTaskFailed,
		Language:     core.Go,
		TypeName:     fmt.Sprintf("%T", e),
		Message:      e.Error(),
		Traceback:    tb.String(),
		FunctionName: f.Name,
	}
}
