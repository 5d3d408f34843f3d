package ember

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/sdk-go/internal/testnode"
)

// fastBeats makes a killed node count as dead after about a second.
var fastBeats = []string{"EMBER_HEARTBEAT_MS=200", "EMBER_NODE_DEATH_BEATS=5"}

// A two-node cluster of its own (a head on 127.0.0.1, a node on 127.0.0.2):
// a call served only on the far node, which is SIGKILLed once the call has
// finished. The caller's node owns the result and pulls it home as soon as
// it is made (proto/README.md, "Tasks on other nodes"), so the value
// survives the node that made it, though the call may not be retried.
func TestResultOutlivesTheNodeThatMadeIt(t *testing.T) {
	testOptions(t) // skips with EMBER_GO_TEST_NO_NODE
	head, err := testnode.Start(testnode.Options{NumCPUs: 1, Env: fastBeats})
	if err != nil {
		t.Fatal(err)
	}
	defer head.Stop()
	far, err := testnode.Start(testnode.Options{NumCPUs: 1, Env: fastBeats, Join: head, NodeIP: "127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer far.Stop()
	ctx := testContext(t, 120*time.Second)

	// The only server of test.make_bytes is connected to the far node, so
	// the call runs there and its 4 MB result is stored there.
	w, err := StartWorker(ctx, ServeOptions{Options: Options{SessionRoot: far.Root}, Names: []string{"test.make_bytes"}})
	if err != nil {
		t.Fatalf("StartWorker on the far node: %v", err)
	}
	defer w.Stop()
	c, err := Connect(ctx, Options{SessionRoot: head.Root})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The head learns of the far node's server from its heartbeats: until
	// then the name is unknown there. Small calls (values inline in the
	// reply) until it knows.
	for deadline := time.Now().Add(30 * time.Second); ; {
		small, err := c.Call(ctx, Function{Language: Go, Name: "test.make_bytes"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		err = small.Get(ctx, nil)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnknownFunction) || time.Now().After(deadline) {
			t.Fatalf("a call on the far node failed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Only waited for, never read here: the far node keeps the only copy.
	ref, err := c.CallWith(ctx, Function{Language: Go, Name: "test.make_bytes"}, CallOptions{MaxRetries: Retries(0)}, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Ready, not Wait: Wait fetches the object to this node (as Ray's
	// fetch_local), and then it would not be lost.
	for deadline := time.Now().Add(60 * time.Second); !ref.Ready(); {
		if time.Now().After(deadline) {
			t.Fatalf("the call did not finish\n%s", far.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}

	far.Kill()
	var got []byte
	if err := ref.Get(ctx, &got); err != nil {
		t.Fatalf("Get after the far node died: %v\nhead log:\n%s", err, head.Log())
	}
	if len(got) != 4<<20 {
		t.Fatalf("read back %d bytes, want %d", len(got), 4<<20)
	}
	// New calls of the name fail fast: its only server died with the node.
	ref2, err := c.Call(ctx, Function{Language: Go, Name: "test.make_bytes"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		err = ref2.Get(ctx, nil)
		if errors.Is(err, ErrUnknownFunction) || time.Now().After(deadline) {
			break
		}
		// Until the head has seen the node die, the call may go there and
		// fail as the node is gone; ask again.
		ref2, _ = c.Call(ctx, Function{Language: Go, Name: "test.make_bytes"}, 1)
		time.Sleep(100 * time.Millisecond)
	}
	if !errors.Is(err, ErrUnknownFunction) {
		t.Fatalf("a call of a name whose only server died = %v, want ErrUnknownFunction", err)
	}
}

// A node with a 64 MiB store spills older objects to disk to take new
// ones; when a spill file is lost (a disk failure), Get of that object
// fails with ErrObjectLost naming it, and the other objects still read back
// equal.
func TestObjectLostWhenItsSpillFileIsGone(t *testing.T) {
	testOptions(t) // skips with EMBER_GO_TEST_NO_NODE
	spill := t.TempDir()
	n, err := testnode.Start(testnode.Options{NumCPUs: 1, ObjectStoreMemory: 64 << 20, Args: []string{"--spill-dir", spill}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx := testContext(t, 120*time.Second)
	c, err := Connect(ctx, Options{SessionRoot: n.Root})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const size = 24 << 20
	var refs []ObjectRef
	for i := 0; i < 5; i++ {
		ref, err := c.Put(ctx, bytes.Repeat([]byte{byte('a' + i)}, size))
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		refs = append(refs, ref)
	}
	// Remove every spill file.
	removed := 0
	err = filepath.WalkDir(spill, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if os.Remove(path) == nil {
				removed++
			}
		}
		return nil
	})
	if err != nil || removed == 0 {
		t.Fatalf("no spill file to remove under %s (err %v): 5 x 24 MB in a 64 MiB store must spill\n%s", spill, err, n.Log())
	}
	lost := 0
	for i, ref := range refs {
		var got []byte
		err := ref.Get(ctx, &got)
		switch {
		case err == nil:
			if len(got) != size || got[0] != byte('a'+i) || got[size-1] != byte('a'+i) {
				t.Errorf("object %d read back wrong: %d bytes", i, len(got))
			}
		case errors.Is(err, ErrObjectLost):
			lost++
			if !strings.Contains(err.Error(), ref.ID().String()) {
				t.Errorf("the error does not name object %s: %v", ref.ID(), err)
			}
		default:
			t.Errorf("Get of object %d = %v, want its value or ErrObjectLost", i, err)
		}
	}
	t.Logf("%d spill files removed, %d objects lost", removed, lost)
	if lost != removed {
		t.Errorf("%d objects lost, %d spill files removed", lost, removed)
	}
}

// A remote client (gRPC, no shared memory) puts by value; the node copies
// a large put into its store, spilling others to make room. A put larger
// than the whole store fails with ErrObjectStoreFull on Get, and the stream
// carries on.
func TestRemotePutIntoAFullStore(t *testing.T) {
	testOptions(t) // skips with EMBER_GO_TEST_NO_NODE
	n, err := testnode.Start(testnode.Options{NumCPUs: 1, ObjectStoreMemory: 64 << 20,
		Args: []string{"--spill-dir", t.TempDir()}, Env: []string{"EMBER_OBJECT_STORE_WAIT_MS=500"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	ctx := testContext(t, 120*time.Second)
	c, err := Connect(ctx, Options{Address: n.Info.Address, Token: n.Info.Token, Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var refs []ObjectRef
	for i := 0; i < 4; i++ {
		ref, err := c.Put(ctx, bytes.Repeat([]byte{byte('k' + i)}, 24<<20))
		if err != nil {
			t.Fatalf("remote put %d: %v", i, err)
		}
		refs = append(refs, ref)
	}
	tooBig, err := c.Put(ctx, make([]byte, 80<<20))
	if err != nil {
		t.Fatalf("the put itself is sent: %v", err)
	}
	if err := tooBig.Get(ctx, nil); !errors.Is(err, ErrObjectStoreFull) {
		t.Fatalf("Get of an 80 MB put into a 64 MiB store = %v, want ErrObjectStoreFull", err)
	}
	for i, ref := range refs {
		var got []byte
		if err := ref.Get(ctx, &got); err != nil || len(got) != 24<<20 || got[0] != byte('k'+i) || got[len(got)-1] != byte('k'+i) {
			t.Fatalf("object %d after the failed put: %d bytes, %v", i, len(got), err)
		}
	}
}
