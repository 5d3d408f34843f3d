package pb

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func randBytes(r *rand.Rand, max int) []byte {
	if r.IntN(4) == 0 {
		return nil
	}
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randString(r *rand.Rand) string {
	const letters = "abcdefghé.CPU_ 0123456789"
	if r.IntN(3) == 0 {
		return ""
	}
	runes := []rune(letters)
	s := make([]rune, r.IntN(12))
	for i := range s {
		s[i] = runes[r.IntN(len(runes))]
	}
	return string(s)
}

func randStrings(r *rand.Rand) []string {
	var ss []string
	for range r.IntN(3) {
		ss = append(ss, randString(r))
	}
	return ss
}

func randMap(r *rand.Rand) map[string]float64 {
	if r.IntN(2) == 0 {
		return nil
	}
	m := map[string]float64{}
	for range r.IntN(4) {
		m[randString(r)] = float64(r.IntN(5)) * 0.5
	}
	return m
}

// randVarint is 0 half the time, else small, large or (as an int32 or an
// enum) negative.
func randVarint(r *rand.Rand) uint64 {
	switch r.IntN(4) {
	case 0, 1:
		return 0
	case 2:
		return uint64(r.IntN(300))
	}
	return r.Uint64()
}

func randValue(r *rand.Rand) *ObjectValue {
	v := &ObjectValue{Format: ValueFormat(int32(randVarint(r))), Metadata: randBytes(r, 4)}
	switch r.IntN(5) {
	case 0:
		v.Body = &ObjectValue_InlineData{InlineData: randBytes(r, 40)}
	case 1:
		v.Body = &ObjectValue_Shm{Shm: &ShmLocation{Offset: randVarint(r), Size: randVarint(r)}}
	case 2:
		v.Body = &ObjectValue_StoredSize{StoredSize: randVarint(r)}
	case 3:
		v.Body = &ObjectValue_Shm{}
	}
	for range r.IntN(2) {
		v.ContainedRefs = append(v.ContainedRefs, randBytes(r, 20))
	}
	return v
}

func randSpec(r *rand.Rand) *TaskSpec {
	s := &TaskSpec{
		TaskId:                  randBytes(r, 16),
		JobId:                   randBytes(r, 4),
		ParentTaskId:            randBytes(r, 16),
		NumReturns:              uint32(randVarint(r)),
		Resources:               randMap(r),
		MaxRetries:              int32(randVarint(r)),
		RetryExceptions:         r.IntN(2) == 0,
		Name:                    randString(r),
		RetryExceptionAllowlist: randStrings(r),
		ActorId:                 randBytes(r, 16),
		MethodName:              randString(r),
		ConcurrencyGroup:        randString(r),
		CrossLanguage:           r.IntN(2) == 0,
	}
	if r.IntN(4) != 0 {
		s.Function = &FunctionDescriptor{Language: Language(int32(randVarint(r))), FunctionId: randBytes(r, 3), Name: randString(r)}
	}
	for range r.IntN(4) {
		a := &TaskArg{ObjectRef: randBytes(r, 20), Keyword: randString(r)}
		if r.IntN(4) != 0 {
			a.Value = randValue(r)
		}
		s.Args = append(s.Args, a)
	}
	if r.IntN(8) == 0 {
		s.ActorCreation = &ActorCreation{MaxRestarts: int32(randVarint(r)), Name: randString(r)}
	}
	if r.IntN(8) == 0 {
		s.SchedulingStrategy = &SchedulingStrategy{}
	}
	return s
}

func randClientOp(r *rand.Rand) *ClientOp {
	switch r.IntN(9) {
	case 0:
		return &ClientOp{Op: &ClientOp_SubmitTask{SubmitTask: &SubmitTask{Spec: randSpec(r), CodeSearchPath: randStrings(r)}}}
	case 1:
		tf := &TaskFinished{TaskId: randBytes(r, 16), RetryableError: r.IntN(2) == 0, ActorExit: r.IntN(2) == 0}
		for range r.IntN(3) {
			tf.Returns = append(tf.Returns, randValue(r))
		}
		return &ClientOp{Op: &ClientOp_TaskFinished{TaskFinished: tf}}
	case 2:
		ru := &RefUpdate{}
		for range r.IntN(3) {
			ru.Add = append(ru.Add, randBytes(r, 20))
		}
		for range r.IntN(3) {
			ru.Remove = append(ru.Remove, randBytes(r, 20))
		}
		for range r.IntN(2) {
			ru.Unmap = append(ru.Unmap, randBytes(r, 20))
		}
		return &ClientOp{Op: &ClientOp_RefUpdate{RefUpdate: ru}}
	case 3:
		g := &GetObjects{Map: r.IntN(2) == 0}
		for range r.IntN(3) {
			g.ObjectIds = append(g.ObjectIds, randBytes(r, 20))
		}
		return &ClientOp{Op: &ClientOp_GetObjects{GetObjects: g}}
	case 4:
		p := &PutObject{ObjectId: randBytes(r, 20)}
		if r.IntN(4) != 0 {
			p.Value = randValue(r)
		}
		return &ClientOp{Op: &ClientOp_PutObject{PutObject: p}}
	case 5:
		return &ClientOp{Op: &ClientOp_CancelTask{CancelTask: &CancelTask{TaskId: randBytes(r, 16), Force: true}}}
	case 6:
		return &ClientOp{Op: &ClientOp_CreateActor{CreateActor: &CreateActor{RequestId: randVarint(r), Spec: randSpec(r)}}}
	case 7:
		return &ClientOp{Op: &ClientOp_SubmitTask{SubmitTask: &SubmitTask{}}}
	}
	return &ClientOp{}
}

func TestAppendClientMessageMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		msg := &ClientMessage{}
		for range r.IntN(4) {
			msg.Ops = append(msg.Ops, randClientOp(r))
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte{1, 2, 3}
		got, err := AppendClientMessage(append([]byte{}, prefix...), msg.Ops)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:3], prefix) || !bytes.Equal(got[3:], want) {
			t.Fatalf("case %d: %v\n got  %x\n want %x", i, msg, got[3:], want)
		}
	}
}

func TestAppendClientMessageRefusesInvalidUTF8(t *testing.T) {
	ops := []*ClientOp{{Op: &ClientOp_SubmitTask{SubmitTask: &SubmitTask{Spec: &TaskSpec{Name: "bad\xff"}}}}}
	if _, err := AppendClientMessage(nil, ops); err == nil {
		t.Fatal("an invalid UTF-8 name was encoded")
	}
	// Unknown fields are kept (proto.Marshal writes them).
	tf := &TaskFinished{TaskId: []byte{1}}
	tf.ProtoReflect().SetUnknown([]byte{0xf8, 0x01, 0x05})
	ops = []*ClientOp{{Op: &ClientOp_TaskFinished{TaskFinished: tf}}}
	want, _ := proto.Marshal(&ClientMessage{Ops: ops})
	got, err := AppendClientMessage(nil, ops)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %x, %v; want %x", got, err, want)
	}
}

func randNodeOp(r *rand.Rand) *NodeOp {
	switch r.IntN(6) {
	case 0, 1:
		return &NodeOp{Op: &NodeOp_ObjectReady{ObjectReady: &ObjectReady{ObjectId: randBytes(r, 20), Value: randValue(r)}}}
	case 2, 3:
		et := &ExecuteTask{FunctionPayload: randBytes(r, 5), GpuIds: randStrings(r), AssignedResources: randMap(r), CodeSearchPath: randStrings(r)}
		if r.IntN(5) != 0 {
			et.Spec = randSpec(r)
		}
		return &NodeOp{Op: &NodeOp_ExecuteTask{ExecuteTask: et}}
	case 4:
		return &NodeOp{Op: &NodeOp_Warning{Warning: &Warning{Message: randString(r)}}}
	}
	return &NodeOp{Op: &NodeOp_ObjectReady{ObjectReady: &ObjectReady{}}}
}

func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	want := &NodeMessage{}
	werr := proto.Unmarshal(b, want)
	got, gerr := UnmarshalNodeMessage(b)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%x: proto.Unmarshal: %v, UnmarshalNodeMessage: %v", b, werr, gerr)
	}
	if werr == nil && !proto.Equal(got, want) {
		t.Fatalf("%x:\n got  %v\n want %v", b, got, want)
	}
}

func TestUnmarshalNodeMessageMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		msg := &NodeMessage{}
		for range r.IntN(4) {
			msg.Ops = append(msg.Ops, randNodeOp(r))
		}
		b, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		checkDecode(t, b)
		// Damaged: a byte changed, bytes cut or added.
		for range 4 {
			d := append([]byte{}, b...)
			switch {
			case len(d) == 0:
				d = append(d, byte(r.Uint32()))
			case r.IntN(3) == 0:
				d = d[:r.IntN(len(d))]
			case r.IntN(2) == 0:
				i := r.IntN(len(d))
				d = append(d[:i], append([]byte{byte(r.Uint32())}, d[i:]...)...)
			default:
				d[r.IntN(len(d))] = byte(r.Uint32())
			}
			checkDecode(t, d)
		}
	}
}

func TestUnmarshalNodeMessageKeepsOddOps(t *testing.T) {
	// Unknown fields, a field repeated (merged or last one wins), and
	// invalid UTF-8 all go to proto.Unmarshal.
	ready := func(extra []byte) []byte {
		inner, _ := proto.Marshal(&ObjectReady{ObjectId: []byte{7}, Value: &ObjectValue{Body: &ObjectValue_InlineData{InlineData: []byte{1}}}})
		inner = append(inner, extra...)
		op := append([]byte{0x12, byte(len(inner))}, inner...)
		return append([]byte{0x0a, byte(len(op))}, op...)
	}
	for _, extra := range [][]byte{
		{0xf8, 0x01, 0x05},             // unknown field 31
		{0x12, 0x03, 0x1a, 0x01, 0x02}, // value again: merged
		{0x0a, 0x01, 0x09},             // object_id again: the last wins
		{0x12, 0x02, 0x30, 0x05},       // stored_size after inline_data
	} {
		checkDecode(t, ready(extra))
	}
	spec, _ := proto.Marshal(&ExecuteTask{Spec: &TaskSpec{Name: "ok"}})
	spec[len(spec)-1] = 0xff // invalid UTF-8 in name
	op := append([]byte{0x1a, byte(len(spec))}, spec...)
	checkDecode(t, append([]byte{0x0a, byte(len(op))}, op...))
}

func TestUnmarshalNodeMessageCopies(t *testing.T) {
	b, _ := proto.Marshal(&NodeMessage{Ops: []*NodeOp{{Op: &NodeOp_ObjectReady{ObjectReady: &ObjectReady{
		ObjectId: []byte{1, 2}, Value: &ObjectValue{Body: &ObjectValue_InlineData{InlineData: []byte{3, 4}}}}}}}})
	msg, err := UnmarshalNodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	ready := msg.Ops[0].GetObjectReady()
	if !bytes.Equal(ready.ObjectId, []byte{1, 2}) || !bytes.Equal(ready.Value.GetInlineData(), []byte{3, 4}) {
		t.Fatalf("decoded values changed with the buffer: %v", ready)
	}
	// An append to a decoded field does not write over the next one.
	_ = append(ready.ObjectId, 9)
	if !bytes.Equal(ready.Value.GetInlineData(), []byte{3, 4}) {
		t.Fatal("append to object_id overwrote the value")
	}
}

func BenchmarkAppendSubmitTask(b *testing.B) {
	ops := []*ClientOp{{Op: &ClientOp_SubmitTask{SubmitTask: &SubmitTask{Spec: &TaskSpec{
		TaskId: make([]byte, 16), JobId: make([]byte, 4), Function: &FunctionDescriptor{Language: 1, Name: "bench.add"},
		Args: []*TaskArg{
			{Value: &ObjectValue{Format: 1, Body: &ObjectValue_InlineData{InlineData: []byte{1}}}},
			{Value: &ObjectValue{Format: 1, Body: &ObjectValue_InlineData{InlineData: []byte{2}}}},
		},
		NumReturns: 1, MaxRetries: 3, Name: "bench.add", CrossLanguage: true,
	}}}}}
	buf := make([]byte, 0, 4096)
	b.Run("wire", func(b *testing.B) {
		for b.Loop() {
			buf, _ = AppendClientMessage(buf[:0], ops)
		}
	})
	b.Run("proto", func(b *testing.B) {
		for b.Loop() {
			msg := &ClientMessage{Ops: ops}
			_ = proto.Size(msg)
			buf, _ = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf[:0], msg)
		}
	})
	msg := &NodeMessage{Ops: []*NodeOp{{Op: &NodeOp_ExecuteTask{ExecuteTask: &ExecuteTask{Spec: ops[0].GetSubmitTask().Spec}}}}}
	enc, _ := proto.Marshal(msg)
	b.Run("decode-wire", func(b *testing.B) {
		for b.Loop() {
			_, _ = UnmarshalNodeMessage(enc)
		}
	})
	b.Run("decode-proto", func(b *testing.B) {
		for b.Loop() {
			_ = proto.Unmarshal(enc, &NodeMessage{})
		}
	})
}

// The hand encoder writes the fields it knows: a field added to one of
// these messages in proto/ would be dropped silently. This fails first,
// so the encoder (wire.go) is taught the field in the same change.
func TestHandEncoderKnowsEveryField(t *testing.T) {
	known := []struct {
		msg    proto.Message
		fields []protowire.Number
	}{
		{&ClientMessage{}, []protowire.Number{1}},
		{&SubmitTask{}, []protowire.Number{1, 2}},
		// 14 (actor_creation) and 16 (scheduling_strategy): proto.Marshal's.
		{&TaskSpec{}, []protowire.Number{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}},
		{&FunctionDescriptor{}, []protowire.Number{1, 2, 3}},
		{&TaskArg{}, []protowire.Number{1, 2, 3}},
		{&ObjectValue{}, []protowire.Number{1, 2, 3, 4, 5, 6}},
		{&ShmLocation{}, []protowire.Number{1, 2}},
		{&TaskFinished{}, []protowire.Number{1, 2, 3, 4}},
		{&RefUpdate{}, []protowire.Number{1, 2, 3}},
		{&GetObjects{}, []protowire.Number{1, 2}},
		{&PutObject{}, []protowire.Number{1, 2}},
	}
	for _, k := range known {
		d := k.msg.ProtoReflect().Descriptor()
		var got []protowire.Number
		for i := range d.Fields().Len() {
			got = append(got, d.Fields().Get(i).Number())
		}
		slices.Sort(got)
		if !slices.Equal(got, k.fields) {
			t.Errorf("%s has fields %v; the hand encoder in wire.go knows %v: teach it the new ones",
				d.FullName(), got, k.fields)
		}
	}
}
