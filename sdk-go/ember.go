package ember

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// ProtocolVersion names the protobuf package this SDK speaks.
const ProtocolVersion = "ember.v1"

// TaskID identifies a task: 16 bytes made by the submitter.
type TaskID [16]byte

// ObjectID identifies an object: the TaskID that made it followed by a
// 4-byte little-endian index. Index 0 is an object made by put; index i+1 is
// the task's i-th return.
type ObjectID [20]byte

// NewObjectID lays out an ObjectID from its task and its raw wire index
// (0 for a put, i+1 for the i-th return; see ReturnObjectID).
func NewObjectID(task TaskID, index uint32) ObjectID {
	var id ObjectID
	copy(id[:16], task[:])
	binary.LittleEndian.PutUint32(id[16:], index)
	return id
}

// ReturnObjectID is the id of the i-th (0-based) return value of task.
func ReturnObjectID(task TaskID, i uint32) ObjectID {
	return NewObjectID(task, i+1)
}

// ParseObjectID decodes wire bytes, checking their length.
func ParseObjectID(b []byte) (ObjectID, error) {
	var id ObjectID
	if len(b) != len(id) {
		return id, fmt.Errorf("invalid object id: expected %d bytes, got %d", len(id), len(b))
	}
	copy(id[:], b)
	return id, nil
}

// Task is the id of the task that made the object.
func (id ObjectID) Task() TaskID {
	var task TaskID
	copy(task[:], id[:16])
	return task
}

// Index is the raw wire index (0 for a put, i+1 for the i-th return).
func (id ObjectID) Index() uint32 {
	return binary.LittleEndian.Uint32(id[16:])
}

// String is the lowercase hex form, as the Rust core prints ids.
func (id ObjectID) String() string { return hex.EncodeToString(id[:]) }

// String is the lowercase hex form, as the Rust core prints ids.
func (id TaskID) String() string { return hex.EncodeToString(id[:]) }

// MaxFrameBytes is the largest frame body either side of the local stream
// accepts (256 MiB), so that a corrupt length cannot cause an unbounded
// allocation. It matches MAX_FRAME_BYTES in the Rust crate ember-proto.
const MaxFrameBytes = 256 << 20

// ErrFrameTooLarge is returned (wrapped) for a frame over MaxFrameBytes.
var ErrFrameTooLarge = errors.New("frame exceeds the size limit")

// EncodeFrame serializes msg as one frame of the local stream: a 4-byte
// little-endian length followed by the protobuf bytes.
func EncodeFrame(msg proto.Message) ([]byte, error) {
	size := proto.Size(msg)
	if size > MaxFrameBytes {
		return nil, fmt.Errorf("encode frame of %d bytes (limit %d): %w", size, MaxFrameBytes, ErrFrameTooLarge)
	}
	out := make([]byte, 4, 4+size)
	binary.LittleEndian.PutUint32(out, uint32(size))
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(out, msg)
	if err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	return out, nil
}

// DecodeFrame reads exactly one frame from r into msg. It returns io.EOF when
// r ends cleanly before a frame, io.ErrUnexpectedEOF when it ends inside one,
// and ErrFrameTooLarge (without reading the body) for an oversized length.
func DecodeFrame(r io.Reader, msg proto.Message) error {
	var header [4]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return err
	}
	size := binary.LittleEndian.Uint32(header[:])
	if size > MaxFrameBytes {
		return fmt.Errorf("decode frame of %d bytes (limit %d): %w", size, MaxFrameBytes, ErrFrameTooLarge)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if err := proto.Unmarshal(body, msg); err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	return nil
}
