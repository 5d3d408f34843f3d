package ember

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ember-run/ember/sdk-go/internal/pb"
)

func testTaskID() TaskID {
	var task TaskID
	for i := range task {
		task[i] = byte(i + 1)
	}
	return task
}

func TestObjectIDLayout(t *testing.T) {
	task := testTaskID()
	id := ReturnObjectID(task, 2) // the third return: wire index 3
	if !bytes.Equal(id[:16], task[:]) {
		t.Fatalf("task part = %x, want %x", id[:16], task[:])
	}
	if want := []byte{3, 0, 0, 0}; !bytes.Equal(id[16:], want) {
		t.Fatalf("index part = %x, want %x (little-endian i+1)", id[16:], want)
	}
	if id.Task() != task || id.Index() != 3 {
		t.Fatalf("Task()/Index() = %v/%d", id.Task(), id.Index())
	}
	big := NewObjectID(task, 0x01020304)
	if want := []byte{4, 3, 2, 1}; !bytes.Equal(big[16:], want) {
		t.Fatalf("index part = %x, want %x", big[16:], want)
	}
	if put := NewObjectID(task, 0); put.Index() != 0 {
		t.Fatalf("put index = %d, want 0", put.Index())
	}
	if got := id.String(); got != "0102030405060708090a0b0c0d0e0f1003000000" {
		t.Fatalf("String() = %s", got)
	}
}

func TestParseObjectIDChecksLength(t *testing.T) {
	id := ReturnObjectID(testTaskID(), 0)
	parsed, err := ParseObjectID(id[:])
	if err != nil || parsed != id {
		t.Fatalf("ParseObjectID = %v, %v", parsed, err)
	}
	if _, err := ParseObjectID(id[:19]); err == nil {
		t.Fatal("ParseObjectID accepted 19 bytes")
	}
}

func TestFrameRoundTrip(t *testing.T) {
	task := testTaskID()
	ret := ReturnObjectID(task, 0)
	msg := &pb.ClientMessage{Ops: []*pb.ClientOp{
		{Op: &pb.ClientOp_SubmitTask{SubmitTask: &pb.SubmitTask{Spec: &pb.TaskSpec{
			TaskId:     task[:],
			NumReturns: 1,
			Resources:  map[string]float64{"CPU": 1},
		}}}},
		{Op: &pb.ClientOp_RefUpdate{RefUpdate: &pb.RefUpdate{Remove: [][]byte{ret[:]}}}},
	}}
	frame, err := EncodeFrame(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := binary.LittleEndian.Uint32(frame), uint32(len(frame)-4); got != want {
		t.Fatalf("length prefix = %d, want %d", got, want)
	}
	// Two frames back to back, as on the socket.
	r := bytes.NewReader(append(append([]byte{}, frame...), frame...))
	for i := 0; i < 2; i++ {
		var got pb.ClientMessage
		if err := DecodeFrame(r, &got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !proto.Equal(&got, msg) {
			t.Fatalf("frame %d: got %v, want %v", i, &got, msg)
		}
	}
	if err := DecodeFrame(r, &pb.ClientMessage{}); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: err = %v, want io.EOF", err)
	}
}

// The same bytes the Rust core's encode_frame makes for Warning{message: "hi"}.
func TestFrameWireBytes(t *testing.T) {
	frame, err := EncodeFrame(&pb.Warning{Message: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{4, 0, 0, 0, 0x0a, 2, 'h', 'i'}; !bytes.Equal(frame, want) {
		t.Fatalf("frame = %x, want %x", frame, want)
	}
}

func TestDecodeFrameRefusesOversizeAndTruncation(t *testing.T) {
	var header [4]byte
	binary.LittleEndian.PutUint32(header[:], MaxFrameBytes+1)
	if err := DecodeFrame(bytes.NewReader(header[:]), &pb.ClientMessage{}); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized: err = %v, want ErrFrameTooLarge", err)
	}
	frame, err := EncodeFrame(&pb.Warning{Message: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if err := DecodeFrame(bytes.NewReader(frame[:len(frame)-1]), &pb.Warning{}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated body: err = %v, want io.ErrUnexpectedEOF", err)
	}
	if err := DecodeFrame(bytes.NewReader(frame[:2]), &pb.Warning{}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated header: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestEncodeFrameRefusesOversize(t *testing.T) {
	msg := &pb.PutObject{Value: &pb.ObjectValue{Body: &pb.ObjectValue_InlineData{
		InlineData: make([]byte, MaxFrameBytes),
	}}}
	if _, err := EncodeFrame(msg); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}
