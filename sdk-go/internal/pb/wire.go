// Hand-written encoding of the ops the local transport sends and decodes
// most (not generated: protoc only writes *.pb.go). A call costs the
// client a SubmitTask and an ObjectReady, the worker an ExecuteTask and a
// TaskFinished; the generic, reflection-driven codec of
// google.golang.org/protobuf spent a quarter of a Go worker's CPU on
// them. These functions write exactly the bytes proto.Marshal writes
// (fields in number order but a oneof last, zero proto3 scalars left out, map entries with
// both key and value, map entries by sorted key as with Deterministic),
// and read like proto.Unmarshal: any op they do not recognise field by
// field (an unknown field, a wire type, a repeated oneof or message
// field, invalid UTF-8) goes to proto.Unmarshal, and any op of another
// kind, or with unknown fields, to proto.Marshal. wire_test.go checks
// both against the generic codec.

package pb

import (
	"math"
	"slices"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ---- encoding ----

// AppendClientMessage appends the encoding of ClientMessage{Ops: ops}
// (what proto.Marshal writes) to b.
func AppendClientMessage(b []byte, ops []*ClientOp) ([]byte, error) {
	for _, op := range ops {
		var err error
		if b, err = appendClientOp(b, op); err != nil {
			return b, err
		}
	}
	return b, nil
}

func appendClientOp(b []byte, op *ClientOp) ([]byte, error) {
	if op != nil && len(op.unknownFields) == 0 {
		switch x := op.Op.(type) {
		case *ClientOp_SubmitTask:
			if m := x.SubmitTask; m.wireOK() {
				return appendOpField(b, 3, m), nil
			}
		case *ClientOp_TaskFinished:
			if m := x.TaskFinished; m.wireOK() {
				return appendOpField(b, 9, m), nil
			}
		case *ClientOp_RefUpdate:
			if m := x.RefUpdate; m != nil && len(m.unknownFields) == 0 {
				return appendOpField(b, 4, m), nil
			}
		case *ClientOp_GetObjects:
			if m := x.GetObjects; m != nil && len(m.unknownFields) == 0 {
				return appendOpField(b, 5, m), nil
			}
		case *ClientOp_PutObject:
			if m := x.PutObject; m != nil && len(m.unknownFields) == 0 && (m.Value == nil || m.Value.wireOK()) {
				return appendOpField(b, 6, m), nil
			}
		}
	}
	n := proto.Size(op)
	b = appendLen(b, 1, n)
	return proto.MarshalOptions{UseCachedSize: true, Deterministic: true}.MarshalAppend(b, op)
}

// wireMessage is a message the hand encoder writes.
type wireMessage interface {
	wireSize() int
	wireAppend(b []byte) []byte
}

// appendOpField appends a ClientMessage.ops entry (field 1) holding a
// ClientOp whose oneof field num is m.
func appendOpField(b []byte, num protowire.Number, m wireMessage) []byte {
	n := m.wireSize()
	b = appendLen(b, 1, sizeLen(num, n))
	b = appendLen(b, num, n)
	return m.wireAppend(b)
}

func sizeLen(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeVarint(uint64(n)) + n
}

func appendLen(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// Proto3 scalars: written only when not zero.

func sizeBytes(num protowire.Number, v []byte) int {
	if len(v) == 0 {
		return 0
	}
	return sizeLen(num, len(v))
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return append(appendLen(b, num, len(v)), v...)
}

func sizeString(num protowire.Number, v string) int {
	if len(v) == 0 {
		return 0
	}
	return sizeLen(num, len(v))
}

func appendString(b []byte, num protowire.Number, v string) []byte {
	if len(v) == 0 {
		return b
	}
	return append(appendLen(b, num, len(v)), v...)
}

func sizeVarint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func sizeBool(num protowire.Number, v bool) int {
	if !v {
		return 0
	}
	return protowire.SizeTag(num) + 1
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return append(protowire.AppendTag(b, num, protowire.VarintType), 1)
}

// map<string, double> entries: key and value both written, always.
func mapEntrySize(k string) int { return sizeLen(1, len(k)) + 1 + 8 }

func sizeMap(num protowire.Number, m map[string]float64) int {
	n := 0
	for k := range m {
		n += sizeLen(num, mapEntrySize(k))
	}
	return n
}

func appendMap(b []byte, num protowire.Number, m map[string]float64) []byte {
	entry := func(b []byte, k string, v float64) []byte {
		b = appendLen(b, num, mapEntrySize(k))
		b = append(appendLen(b, 1, len(k)), k...)
		b = protowire.AppendTag(b, 2, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v))
	}
	if len(m) == 1 {
		for k, v := range m {
			b = entry(b, k, v)
		}
		return b
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = entry(b, k, m[k])
	}
	return b
}

func mapOK(m map[string]float64) bool {
	for k := range m {
		if !utf8.ValidString(k) {
			return false
		}
	}
	return true
}

func stringsOK(ss []string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// wireOK: x and what it holds have no unknown fields, no nil element in
// a repeated field and valid UTF-8 strings (proto.Marshal refuses
// invalid ones: it gets them, and says so).
func (x *ObjectValue) wireOK() bool {
	if x == nil || len(x.unknownFields) > 0 {
		return false
	}
	if s, ok := x.Body.(*ObjectValue_Shm); ok && s.Shm != nil && len(s.Shm.unknownFields) > 0 {
		return false
	}
	return true
}

func (x *ObjectValue) wireSize() int {
	n := sizeVarint(1, uint64(int64(x.Format))) + sizeBytes(2, x.Metadata)
	for _, r := range x.ContainedRefs {
		n += sizeLen(5, len(r))
	}
	switch body := x.Body.(type) {
	case *ObjectValue_InlineData:
		n += sizeLen(3, len(body.InlineData))
	case *ObjectValue_Shm:
		n += sizeLen(4, body.Shm.wireSize())
	case *ObjectValue_StoredSize:
		n += protowire.SizeTag(6) + protowire.SizeVarint(body.StoredSize)
	}
	return n
}

// The oneof goes last, as proto.Marshal writes it.
func (x *ObjectValue) wireAppend(b []byte) []byte {
	b = appendVarint(b, 1, uint64(int64(x.Format)))
	b = appendBytes(b, 2, x.Metadata)
	for _, r := range x.ContainedRefs {
		b = append(appendLen(b, 5, len(r)), r...)
	}
	switch body := x.Body.(type) {
	case *ObjectValue_InlineData:
		b = append(appendLen(b, 3, len(body.InlineData)), body.InlineData...)
	case *ObjectValue_Shm:
		b = appendLen(b, 4, body.Shm.wireSize())
		b = body.Shm.wireAppend(b)
	case *ObjectValue_StoredSize:
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, body.StoredSize)
	}
	return b
}

// A nil *ShmLocation in the oneof is written as an empty message.
func (x *ShmLocation) wireSize() int {
	if x == nil {
		return 0
	}
	return sizeVarint(1, x.Offset) + sizeVarint(2, x.Size)
}

func (x *ShmLocation) wireAppend(b []byte) []byte {
	if x == nil {
		return b
	}
	return appendVarint(appendVarint(b, 1, x.Offset), 2, x.Size)
}

func (x *FunctionDescriptor) wireSize() int {
	return sizeVarint(1, uint64(int64(x.Language))) + sizeBytes(2, x.FunctionId) + sizeString(3, x.Name)
}

func (x *FunctionDescriptor) wireAppend(b []byte) []byte {
	b = appendVarint(b, 1, uint64(int64(x.Language)))
	b = appendBytes(b, 2, x.FunctionId)
	return appendString(b, 3, x.Name)
}

func (x *TaskArg) wireOK() bool {
	return x != nil && len(x.unknownFields) == 0 && (x.Value == nil || x.Value.wireOK()) && utf8.ValidString(x.Keyword)
}

func (x *TaskArg) wireSize() int {
	n := sizeBytes(1, x.ObjectRef)
	if x.Value != nil {
		n += sizeLen(2, x.Value.wireSize())
	}
	return n + sizeString(3, x.Keyword)
}

func (x *TaskArg) wireAppend(b []byte) []byte {
	b = appendBytes(b, 1, x.ObjectRef)
	if x.Value != nil {
		b = appendLen(b, 2, x.Value.wireSize())
		b = x.Value.wireAppend(b)
	}
	return appendString(b, 3, x.Keyword)
}

// A spec with an actor creation or a scheduling strategy is left to
// proto.Marshal.
func (x *TaskSpec) wireOK() bool {
	if x == nil || len(x.unknownFields) > 0 || x.ActorCreation != nil || x.SchedulingStrategy != nil {
		return false
	}
	if f := x.Function; f != nil && (len(f.unknownFields) > 0 || !utf8.ValidString(f.Name)) {
		return false
	}
	for _, a := range x.Args {
		if !a.wireOK() {
			return false
		}
	}
	return mapOK(x.Resources) && utf8.ValidString(x.Name) && stringsOK(x.RetryExceptionAllowlist) &&
		utf8.ValidString(x.MethodName) && utf8.ValidString(x.ConcurrencyGroup)
}

func (x *TaskSpec) wireSize() int {
	n := sizeBytes(1, x.TaskId) + sizeBytes(2, x.JobId) + sizeBytes(3, x.ParentTaskId)
	if x.Function != nil {
		n += sizeLen(4, x.Function.wireSize())
	}
	for _, a := range x.Args {
		n += sizeLen(5, a.wireSize())
	}
	n += sizeVarint(6, uint64(x.NumReturns))
	n += sizeMap(7, x.Resources)
	n += sizeVarint(8, uint64(int64(x.MaxRetries)))
	n += sizeBool(9, x.RetryExceptions)
	n += sizeString(10, x.Name)
	for _, s := range x.RetryExceptionAllowlist {
		n += sizeLen(11, len(s))
	}
	n += sizeBytes(12, x.ActorId)
	n += sizeString(13, x.MethodName)
	n += sizeString(15, x.ConcurrencyGroup)
	return n + sizeBool(17, x.CrossLanguage)
}

func (x *TaskSpec) wireAppend(b []byte) []byte {
	b = appendBytes(b, 1, x.TaskId)
	b = appendBytes(b, 2, x.JobId)
	b = appendBytes(b, 3, x.ParentTaskId)
	if x.Function != nil {
		b = appendLen(b, 4, x.Function.wireSize())
		b = x.Function.wireAppend(b)
	}
	for _, a := range x.Args {
		b = appendLen(b, 5, a.wireSize())
		b = a.wireAppend(b)
	}
	b = appendVarint(b, 6, uint64(x.NumReturns))
	b = appendMap(b, 7, x.Resources)
	b = appendVarint(b, 8, uint64(int64(x.MaxRetries)))
	b = appendBool(b, 9, x.RetryExceptions)
	b = appendString(b, 10, x.Name)
	for _, s := range x.RetryExceptionAllowlist {
		b = append(appendLen(b, 11, len(s)), s...)
	}
	b = appendBytes(b, 12, x.ActorId)
	b = appendString(b, 13, x.MethodName)
	b = appendString(b, 15, x.ConcurrencyGroup)
	return appendBool(b, 17, x.CrossLanguage)
}

func (x *SubmitTask) wireOK() bool {
	return x != nil && len(x.unknownFields) == 0 && (x.Spec == nil || x.Spec.wireOK()) && stringsOK(x.CodeSearchPath)
}

func (x *SubmitTask) wireSize() int {
	n := 0
	if x.Spec != nil {
		n += sizeLen(1, x.Spec.wireSize())
	}
	for _, s := range x.CodeSearchPath {
		n += sizeLen(2, len(s))
	}
	return n
}

func (x *SubmitTask) wireAppend(b []byte) []byte {
	if x.Spec != nil {
		b = appendLen(b, 1, x.Spec.wireSize())
		b = x.Spec.wireAppend(b)
	}
	for _, s := range x.CodeSearchPath {
		b = append(appendLen(b, 2, len(s)), s...)
	}
	return b
}

func (x *TaskFinished) wireOK() bool {
	if x == nil || len(x.unknownFields) > 0 {
		return false
	}
	for _, r := range x.Returns {
		if !r.wireOK() {
			return false
		}
	}
	return true
}

func (x *TaskFinished) wireSize() int {
	n := sizeBytes(1, x.TaskId)
	for _, r := range x.Returns {
		n += sizeLen(2, r.wireSize())
	}
	return n + sizeBool(3, x.RetryableError) + sizeBool(4, x.ActorExit)
}

func (x *TaskFinished) wireAppend(b []byte) []byte {
	b = appendBytes(b, 1, x.TaskId)
	for _, r := range x.Returns {
		b = appendLen(b, 2, r.wireSize())
		b = r.wireAppend(b)
	}
	return appendBool(appendBool(b, 3, x.RetryableError), 4, x.ActorExit)
}

func sizeRepeatedBytes(num protowire.Number, vs [][]byte) int {
	n := 0
	for _, v := range vs {
		n += sizeLen(num, len(v))
	}
	return n
}

func appendRepeatedBytes(b []byte, num protowire.Number, vs [][]byte) []byte {
	for _, v := range vs {
		b = append(appendLen(b, num, len(v)), v...)
	}
	return b
}

func (x *RefUpdate) wireSize() int {
	return sizeRepeatedBytes(1, x.Add) + sizeRepeatedBytes(2, x.Remove) + sizeRepeatedBytes(3, x.Unmap)
}

func (x *RefUpdate) wireAppend(b []byte) []byte {
	b = appendRepeatedBytes(b, 1, x.Add)
	b = appendRepeatedBytes(b, 2, x.Remove)
	return appendRepeatedBytes(b, 3, x.Unmap)
}

func (x *GetObjects) wireSize() int {
	return sizeRepeatedBytes(1, x.ObjectIds) + sizeBool(2, x.Map)
}

func (x *GetObjects) wireAppend(b []byte) []byte {
	return appendBool(appendRepeatedBytes(b, 1, x.ObjectIds), 2, x.Map)
}

func (x *PutObject) wireSize() int {
	n := sizeBytes(1, x.ObjectId)
	if x.Value != nil {
		n += sizeLen(2, x.Value.wireSize())
	}
	return n
}

func (x *PutObject) wireAppend(b []byte) []byte {
	b = appendBytes(b, 1, x.ObjectId)
	if x.Value != nil {
		b = appendLen(b, 2, x.Value.wireSize())
		b = x.Value.wireAppend(b)
	}
	return b
}

// ---- decoding ----

// UnmarshalNodeMessage decodes b into a new NodeMessage like
// proto.Unmarshal. Bytes and strings of the ops it decodes itself are
// views of one copy of the op's bytes (b can be reused).
func UnmarshalNodeMessage(b []byte) (*NodeMessage, error) {
	count := 0
	for p := b; len(p) > 0; count++ {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return unmarshalNodeMessageSlow(b)
		}
		_, m := protowire.ConsumeBytes(p[n:])
		if m < 0 {
			return unmarshalNodeMessageSlow(b)
		}
		p = p[n+m:]
	}
	msg := &NodeMessage{}
	if count == 0 {
		return msg, nil
	}
	msg.Ops = make([]*NodeOp, 0, count)
	for p := b; len(p) > 0; {
		_, _, n := protowire.ConsumeTag(p)
		v, m := protowire.ConsumeBytes(p[n:])
		p = p[n+m:]
		op := decodeNodeOp(v)
		if op == nil {
			op = new(NodeOp)
			if err := proto.Unmarshal(v, op); err != nil {
				return nil, err
			}
		}
		msg.Ops = append(msg.Ops, op)
	}
	return msg, nil
}

func unmarshalNodeMessageSlow(b []byte) (*NodeMessage, error) {
	msg := &NodeMessage{}
	if err := proto.Unmarshal(b, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// decodeNodeOp decodes an ObjectReady or an ExecuteTask op; nil for
// anything else (proto.Unmarshal's to decode).
func decodeNodeOp(v []byte) *NodeOp {
	num, typ, n := protowire.ConsumeTag(v)
	if n < 0 || typ != protowire.BytesType {
		return nil
	}
	body, m := protowire.ConsumeBytes(v[n:])
	if m < 0 || n+m != len(v) {
		return nil
	}
	switch num {
	case 2:
		return decodeObjectReady(body)
	case 3:
		return decodeExecuteTask(body)
	}
	return nil
}

// view is b[:len(b):len(b)] (an append to it does not write past it).
func view(b []byte) []byte { return b[:len(b):len(b)] }

// text is b as a string without a copy: b is part of a copy nothing
// writes to (no []byte view covers it), and must be valid UTF-8.
func text(b []byte) (string, bool) {
	if len(b) == 0 {
		return "", true
	}
	if !utf8.Valid(b) {
		return "", false
	}
	return unsafe.String(&b[0], len(b)), true
}

// field reads one field's tag and, for a varint, fixed64 or
// length-delimited one, its value; ok false for anything else or a
// malformed field.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	u     uint64
	bytes []byte
}

// eachField calls each for every field of b in order; false as soon as a
// field is malformed (see next) or each returns false.
func eachField(b []byte, each func(f field) bool) bool {
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok || !each(f) {
			return false
		}
		b = rest
	}
	return true
}

func next(p []byte) (f field, rest []byte, ok bool) {
	num, typ, n := protowire.ConsumeTag(p)
	if n < 0 {
		return f, nil, false
	}
	p = p[n:]
	f.num, f.typ = num, typ
	switch typ {
	case protowire.VarintType:
		f.u, n = protowire.ConsumeVarint(p)
	case protowire.Fixed64Type:
		f.u, n = protowire.ConsumeFixed64(p)
	case protowire.BytesType:
		f.bytes, n = protowire.ConsumeBytes(p)
	default:
		return f, nil, false
	}
	if n < 0 {
		return f, nil, false
	}
	return f, p[n:], true
}

type readyBlock struct {
	op  NodeOp
	w   NodeOp_ObjectReady
	r   ObjectReady
	v   ObjectValue
	inl ObjectValue_InlineData
}

func decodeObjectReady(src []byte) *NodeOp {
	b := append([]byte(nil), src...)
	blk := &readyBlock{}
	r := &blk.r
	ok := eachField(b, func(f field) bool {
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			r.ObjectId = view(f.bytes)
		case f.num == 2 && f.typ == protowire.BytesType && r.Value == nil:
			if !decodeObjectValue(f.bytes, &blk.v, &blk.inl) {
				return false
			}
			r.Value = &blk.v
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	blk.w.ObjectReady = r
	blk.op.Op = &blk.w
	return &blk.op
}

// decodeObjectValue decodes b into v (inl: the InlineData body to use).
func decodeObjectValue(b []byte, v *ObjectValue, inl *ObjectValue_InlineData) bool {
	return eachField(b, func(f field) bool {
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			v.Format = ValueFormat(int32(f.u))
		case f.num == 2 && f.typ == protowire.BytesType:
			v.Metadata = view(f.bytes)
		case f.num == 3 && f.typ == protowire.BytesType && v.Body == nil:
			inl.InlineData = view(f.bytes)
			v.Body = inl
		case f.num == 4 && f.typ == protowire.BytesType && v.Body == nil:
			loc := &ShmLocation{}
			ok := eachField(f.bytes, func(g field) bool {
				switch {
				case g.typ != protowire.VarintType:
					return false
				case g.num == 1:
					loc.Offset = g.u
				case g.num == 2:
					loc.Size = g.u
				default:
					return false
				}
				return true
			})
			if !ok {
				return false
			}
			v.Body = &ObjectValue_Shm{Shm: loc}
		case f.num == 5 && f.typ == protowire.BytesType:
			v.ContainedRefs = append(v.ContainedRefs, view(f.bytes))
		case f.num == 6 && f.typ == protowire.VarintType && v.Body == nil:
			v.Body = &ObjectValue_StoredSize{StoredSize: f.u}
		default:
			return false
		}
		return true
	})
}

type execBlock struct {
	op   NodeOp
	w    NodeOp_ExecuteTask
	et   ExecuteTask
	spec TaskSpec
	fn   FunctionDescriptor
}

type argBlock struct {
	arg TaskArg
	v   ObjectValue
	inl ObjectValue_InlineData
}

func decodeExecuteTask(src []byte) *NodeOp {
	b := append([]byte(nil), src...)
	blk := &execBlock{}
	et := &blk.et
	ok := eachField(b, func(f field) bool {
		if f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case 1:
			if et.Spec != nil || !decodeTaskSpec(f.bytes, &blk.spec, &blk.fn) {
				return false
			}
			et.Spec = &blk.spec
		case 2:
			et.FunctionPayload = view(f.bytes)
		case 3:
			s, ok := text(f.bytes)
			if !ok {
				return false
			}
			et.GpuIds = append(et.GpuIds, s)
		case 4:
			if !decodeMapEntry(f.bytes, &et.AssignedResources) {
				return false
			}
		case 5:
			s, ok := text(f.bytes)
			if !ok {
				return false
			}
			et.CodeSearchPath = append(et.CodeSearchPath, s)
		default:
			return false
		}
		return true
	})
	if !ok {
		return nil
	}
	blk.w.ExecuteTask = et
	blk.op.Op = &blk.w
	return &blk.op
}

func decodeMapEntry(b []byte, m *map[string]float64) bool {
	var key string
	var value float64
	ok := eachField(b, func(f field) bool {
		var ok bool
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			key, ok = text(f.bytes)
			return ok
		case f.num == 2 && f.typ == protowire.Fixed64Type:
			value = math.Float64frombits(f.u)
			return true
		}
		return false
	})
	if !ok {
		return false
	}
	if *m == nil {
		*m = make(map[string]float64)
	}
	(*m)[key] = value
	return true
}

func decodeTaskSpec(b []byte, spec *TaskSpec, fn *FunctionDescriptor) bool {
	nargs := 0
	if !eachField(b, func(f field) bool {
		if f.num == 5 {
			nargs++
		}
		return true
	}) {
		return false
	}
	var args []argBlock
	if nargs > 0 {
		args = make([]argBlock, 0, nargs)
		spec.Args = make([]*TaskArg, 0, nargs)
	}
	return eachField(b, func(f field) bool {
		wantVarint := f.num == 6 || f.num == 8 || f.num == 9 || f.num == 17
		if wantVarint != (f.typ == protowire.VarintType) || (!wantVarint && f.typ != protowire.BytesType) {
			return false
		}
		var ok bool
		switch f.num {
		case 1:
			spec.TaskId = view(f.bytes)
		case 2:
			spec.JobId = view(f.bytes)
		case 3:
			spec.ParentTaskId = view(f.bytes)
		case 4:
			if spec.Function != nil || !decodeFunction(f.bytes, fn) {
				return false
			}
			spec.Function = fn
		case 5:
			args = append(args, argBlock{})
			a := &args[len(args)-1]
			if !decodeTaskArg(f.bytes, a) {
				return false
			}
			spec.Args = append(spec.Args, &a.arg)
		case 6:
			spec.NumReturns = uint32(f.u)
		case 7:
			if !decodeMapEntry(f.bytes, &spec.Resources) {
				return false
			}
		case 8:
			spec.MaxRetries = int32(f.u)
		case 9:
			spec.RetryExceptions = f.u != 0
		case 10:
			if spec.Name, ok = text(f.bytes); !ok {
				return false
			}
		case 11:
			s, ok := text(f.bytes)
			if !ok {
				return false
			}
			spec.RetryExceptionAllowlist = append(spec.RetryExceptionAllowlist, s)
		case 12:
			spec.ActorId = view(f.bytes)
		case 13:
			if spec.MethodName, ok = text(f.bytes); !ok {
				return false
			}
		case 14:
			if spec.ActorCreation != nil {
				return false
			}
			spec.ActorCreation = &ActorCreation{}
			if proto.Unmarshal(f.bytes, spec.ActorCreation) != nil {
				return false
			}
		case 15:
			if spec.ConcurrencyGroup, ok = text(f.bytes); !ok {
				return false
			}
		case 16:
			if spec.SchedulingStrategy != nil {
				return false
			}
			spec.SchedulingStrategy = &SchedulingStrategy{}
			if proto.Unmarshal(f.bytes, spec.SchedulingStrategy) != nil {
				return false
			}
		case 17:
			spec.CrossLanguage = f.u != 0
		default:
			return false
		}
		return true
	})
}

func decodeFunction(b []byte, fn *FunctionDescriptor) bool {
	return eachField(b, func(f field) bool {
		var ok bool
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			fn.Language = Language(int32(f.u))
		case f.num == 2 && f.typ == protowire.BytesType:
			fn.FunctionId = view(f.bytes)
		case f.num == 3 && f.typ == protowire.BytesType:
			if fn.Name, ok = text(f.bytes); !ok {
				return false
			}
		default:
			return false
		}
		return true
	})
}

func decodeTaskArg(b []byte, a *argBlock) bool {
	return eachField(b, func(f field) bool {
		if f.typ != protowire.BytesType {
			return false
		}
		var ok bool
		switch f.num {
		case 1:
			a.arg.ObjectRef = view(f.bytes)
		case 2:
			if a.arg.Value != nil || !decodeObjectValue(f.bytes, &a.v, &a.inl) {
				return false
			}
			a.arg.Value = &a.v
		case 3:
			if a.arg.Keyword, ok = text(f.bytes); !ok {
				return false
			}
		default:
			return false
		}
		return true
	})
}

// ---- ops built in one allocation ----

type submitTaskOp struct {
	op ClientOp
	w  ClientOp_SubmitTask
	st SubmitTask
}

// NewSubmitTaskOp is ClientOp{SubmitTask{Spec: spec}}, in one allocation.
func NewSubmitTaskOp(spec *TaskSpec) *ClientOp {
	b := &submitTaskOp{}
	b.st.Spec = spec
	b.w.SubmitTask = &b.st
	b.op.Op = &b.w
	return &b.op
}

type taskFinishedOp struct {
	op  ClientOp
	w   ClientOp_TaskFinished
	tf  TaskFinished
	ret [1]*ObjectValue
}

// NewTaskFinishedOp is ClientOp{TaskFinished{TaskId: task, Returns:
// returns}}, in one allocation.
func NewTaskFinishedOp(task []byte, returns []*ObjectValue) *ClientOp {
	b := &taskFinishedOp{}
	b.tf.TaskId = task
	b.tf.Returns = returns
	b.w.TaskFinished = &b.tf
	b.op.Op = &b.w
	return &b.op
}

// InlineArgs holds n TaskArgs, each with an ObjectValue of inline data,
// in one allocation.
type InlineArgs struct {
	blocks []inlineArg
}

type inlineArg struct {
	arg TaskArg
	v   ObjectValue
	inl ObjectValue_InlineData
}

// NewInlineArgs makes room for n arguments.
func NewInlineArgs(n int) InlineArgs { return InlineArgs{blocks: make([]inlineArg, n)} }

// Ref is the i-th argument, passed by reference.
func (a InlineArgs) Ref(i int, id []byte) *TaskArg {
	b := &a.blocks[i]
	b.arg.ObjectRef = id
	return &b.arg
}

// Inline is the i-th argument, passed by value.
func (a InlineArgs) Inline(i int, format ValueFormat, data []byte) *TaskArg {
	b := &a.blocks[i]
	b.inl.InlineData = data
	b.v.Format = format
	b.v.Body = &b.inl
	b.arg.Value = &b.v
	return &b.arg
}

type taskFinishedInlineOp struct {
	taskFinishedOp
	v   ObjectValue
	inl ObjectValue_InlineData
}

// NewTaskFinishedInlineOp is the TaskFinished of a task with one return,
// inline, in one allocation.
func NewTaskFinishedInlineOp(task []byte, format ValueFormat, data []byte) *ClientOp {
	b := &taskFinishedInlineOp{}
	b.inl.InlineData = data
	b.v.Format = format
	b.v.Body = &b.inl
	b.ret[0] = &b.v
	b.tf.TaskId = task
	b.tf.Returns = b.ret[:]
	b.w.TaskFinished = &b.tf
	b.op.Op = &b.w
	return &b.op
}
