package worker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/ember-run/ember/sdk-go/internal/core"
)

// Class is a registered actor class: a constructor returning *T, and the
// exported methods of *T.
type Class struct {
	Name string
	ctor *Func
	// Methods by Go name; unusable holds those whose shape cannot be
	// called, with why.
	methods  map[string]*Func
	unusable map[string]string
}

var (
	classMu sync.RWMutex
	classes = map[string]*Class{}
)

// RegisterClass adds the actor class name made by ctor: a func whose
// parameters are decoded from the creation's arguments (an optional
// leading context.Context) and whose results are (*T, error) or *T. Its
// methods are the exported methods of *T with the shapes Register takes.
func RegisterClass(name string, ctor any) error {
	if name == "" {
		return errors.New("ember.RegisterActor: empty class name")
	}
	v := reflect.ValueOf(ctor)
	if v.Kind() != reflect.Func || v.IsNil() {
		return fmt.Errorf("ember.RegisterActor(%q): %T is not a function", name, ctor)
	}
	t := v.Type()
	if t.NumOut() < 1 || t.NumOut() > 2 || t.Out(0).Kind() != reflect.Pointer || (t.NumOut() == 2 && t.Out(1) != errType) {
		return fmt.Errorf("ember.RegisterActor(%q): the constructor %s must return (*T, error) or *T", name, t)
	}
	f, err := describeFunc(name, v, false)
	if err != nil {
		return fmt.Errorf("ember.RegisterActor(%q): %w", name, err)
	}
	c := &Class{Name: name, ctor: f, methods: map[string]*Func{}, unusable: map[string]string{}}
	instance := t.Out(0)
	for i := 0; i < instance.NumMethod(); i++ {
		m := instance.Method(i)
		mf, err := describeFunc(name+"."+m.Name, m.Func, true)
		if err != nil {
			c.unusable[m.Name] = err.Error()
			continue
		}
		c.methods[m.Name] = mf
	}
	if len(c.methods) == 0 {
		return fmt.Errorf("ember.RegisterActor(%q): %s has no exported method to call", name, instance)
	}
	classMu.Lock()
	defer classMu.Unlock()
	if _, taken := classes[name]; taken {
		return fmt.Errorf("ember.RegisterActor: an actor class is already registered as %q", name)
	}
	classes[name] = c
	return nil
}

// UnregisterClass removes name (for tests).
func UnregisterClass(name string) {
	classMu.Lock()
	defer classMu.Unlock()
	delete(classes, name)
}

// LookupClass returns the class registered as name.
func LookupClass(name string) *Class {
	classMu.RLock()
	defer classMu.RUnlock()
	return classes[name]
}

// ClassNames lists the registered classes, sorted.
func ClassNames() []string {
	classMu.RLock()
	defer classMu.RUnlock()
	names := make([]string, 0, len(classes))
	for n := range classes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New runs the constructor: the instance (a non-nil *T), or a
// *core.TaskError as Call returns.
func (c *Class) New(ctx context.Context, args []Arg) (reflect.Value, error) {
	out, err := c.ctor.Call(ctx, args)
	if err != nil {
		return reflect.Value{}, err
	}
	v := reflect.ValueOf(out)
	if !v.IsValid() || v.IsNil() {
		return reflect.Value{}, &core.TaskError{
			Kind:         core.KindTaskFailed,
			Language:     core.Go,
			TypeName:     "ember.ConstructorError",
			Message:      fmt.Sprintf("the constructor of %s returned a nil instance", c.Name),
			FunctionName: c.Name,
		}
	}
	return v, nil
}

// Method finds the method a call names: its Go name ("Incr"), or that
// name with the first letter in lower case ("incr"), as other languages
// name methods. The error says what the class has.
func (c *Class) Method(name string) (*Func, error) {
	if f := c.methods[name]; f != nil {
		return f, nil
	}
	goName := name
	if r, size := utf8.DecodeRuneInString(name); r != utf8.RuneError && unicode.IsLower(r) {
		goName = string(unicode.ToUpper(r)) + name[size:]
		if f := c.methods[goName]; f != nil {
			return f, nil
		}
	}
	if why, ok := c.unusable[goName]; ok {
		return nil, fmt.Errorf("the method %s of the Go actor class %q cannot be called: %s", goName, c.Name, why)
	}
	names := make([]string, 0, len(c.methods))
	for n := range c.methods {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("the Go actor class %q has no method %q (its methods: %s)", c.Name, name, strings.Join(names, ", "))
}
