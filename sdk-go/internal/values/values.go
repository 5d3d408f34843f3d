// Package values turns Go values into ember object values (format and
// bytes) and back: MSGPACK for ordinary values, RAW for values of type
// Raw, ARROW (an Arrow IPC stream) for arrow.RecordBatch,
// []arrow.RecordBatch and arrow.Table, ERROR values as *core.TaskError.
package values

import (
	"fmt"
	"reflect"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/ember-run/ember/sdk-go/internal/msgpack"
	"github.com/ember-run/ember/sdk-go/internal/pb"
)

// Raw is stored and passed as plain bytes (format RAW), not msgpack.
type Raw []byte

var (
	rawType   = reflect.TypeFor[Raw]()
	bytesType = reflect.TypeFor[[]byte]()
)

// Encode returns the format and bytes of v.
func Encode(v any) (pb.ValueFormat, []byte, error) {
	switch x := v.(type) {
	case Raw:
		return pb.ValueFormat_RAW, []byte(x), nil
	case arrow.RecordBatch, []arrow.RecordBatch, arrow.Table:
		data, err := encodeArrow(x)
		if err != nil {
			return 0, nil, err
		}
		return pb.ValueFormat_ARROW, data, nil
	}
	data, err := msgpack.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	return pb.ValueFormat_MSGPACK, data, nil
}

// Decode decodes data of the given format into out (a non-nil pointer).
// The bytes may be shared memory: nothing of them is kept.
func Decode(format pb.ValueFormat, data []byte, out any) error {
	switch format {
	case pb.ValueFormat_MSGPACK:
		if IsArrowTarget(out) {
			return fmt.Errorf("ember: the value is msgpack, not Arrow: it cannot be decoded into %s "+
				"(only an ARROW value, such as a pyarrow Table or an arrow.RecordBatch put or returned, can)", reflect.TypeOf(out).Elem())
		}
		return msgpack.Unmarshal(data, out)
	case pb.ValueFormat_ARROW:
		if IsArrowTarget(out) {
			return decodeArrow(data, out)
		}
		return decodeBytes(format, data, reflect.ValueOf(out))
	case pb.ValueFormat_RAW:
		if IsArrowTarget(out) {
			return fmt.Errorf("ember: the value is RAW (plain bytes), not Arrow: it cannot be decoded into %s", reflect.TypeOf(out).Elem())
		}
		return decodeBytes(format, data, reflect.ValueOf(out))
	case pb.ValueFormat_PICKLE:
		return fmt.Errorf("ember: the value is a Python-only value (pickle); values passed to Go must be msgpack " +
			"(None, bool, int, float, str, bytes, lists, dicts), raw bytes or Arrow")
	}
	return fmt.Errorf("ember: cannot decode a value of format %v", format)
}

// DecodeValue decodes into a settable reflect.Value.
func DecodeValue(format pb.ValueFormat, data []byte, v reflect.Value) error {
	return Decode(format, data, v.Addr().Interface())
}

func decodeBytes(format pb.ValueFormat, data []byte, p reflect.Value) error {
	if p.Kind() != reflect.Pointer || p.IsNil() {
		return fmt.Errorf("ember: decode needs a non-nil pointer, got %s", p.Type())
	}
	v := p.Elem()
	copied := append([]byte{}, data...)
	switch {
	case v.Type() == rawType:
		v.Set(reflect.ValueOf(Raw(copied)))
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
		v.Set(reflect.ValueOf(copied).Convert(v.Type()))
	case v.Kind() == reflect.Interface && v.NumMethod() == 0:
		v.Set(reflect.ValueOf(copied))
	default:
		if format == pb.ValueFormat_ARROW {
			return fmt.Errorf("ember: the value is ARROW (an Arrow table) and cannot be decoded into %s: "+
				"decode it into *arrow.Table, *[]arrow.RecordBatch or *arrow.RecordBatch (or its IPC stream bytes into *[]byte or *ember.Raw)", v.Type())
		}
		return fmt.Errorf("ember: a %v value (bytes) cannot be decoded into %s", format, v.Type())
	}
	return nil
}
