// Conformance tests for thinsnapd, run against a live daemon through
// containerd's own snapshots/proxy client, exactly as containerd would talk
// to it as a proxy plugin.
//
// The binary is built on the host (GOPATH mode, Debian's containerd 1.6.20
// sources) and run as root inside the test VM by run-in-vm.sh, because the
// suite mounts the returned mounts itself.
//
//	conformance.test -test.root -test.v -test.parallel 1 -thinsnap.socket PATH
package conformance

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/pkg/testutil"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

var socketPath = flag.String("thinsnap.socket", "", "unix socket of the thinsnapd under test")

// dial opens a fresh connection to thinsnapd and wraps it in containerd's
// proxy snapshotter. The returned func closes the connection.
func dial(ctx context.Context) (snapshots.Snapshotter, func() error, error) {
	if *socketPath == "" {
		return nil, nil, fmt.Errorf("-thinsnap.socket is required")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(dctx, dialer.DialAddress(*socketPath),
		grpc.WithInsecure(), grpc.WithBlock(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", *socketPath, err)
	}
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "thinsnap"), conn.Close, nil
}

// removeAll deletes every snapshot, children before parents, the way
// containerd's garbage collector does: with a context that carries no
// namespace (keys are global to a proxy snapshotter).
func removeAll(sn snapshots.Snapshotter) error {
	ctx := context.Background()
	for {
		children := map[string]int{}
		var names []string
		if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			names = append(names, info.Name)
			if info.Parent != "" {
				children[info.Parent]++
			}
			return nil
		}); err != nil {
			return fmt.Errorf("walk: %w", err)
		}
		if len(names) == 0 {
			break
		}
		removed := 0
		for _, name := range names {
			if children[name] > 0 {
				continue
			}
			if err := sn.Remove(ctx, name); err != nil {
				return fmt.Errorf("remove %q: %w", name, err)
			}
			removed++
		}
		if removed == 0 {
			return fmt.Errorf("no removable leaf among %d snapshots: %q", len(names), names)
		}
	}
	// Removal may be deferred to Cleanup; containerd's GC calls it after
	// removing and tolerates snapshotters that do not implement it.
	if cleaner, ok := sn.(snapshots.Cleaner); ok {
		if err := cleaner.Cleanup(ctx); err != nil && !errdefs.IsNotImplemented(err) {
			return fmt.Errorf("cleanup: %w", err)
		}
	}
	return nil
}

func countSnapshots(sn snapshots.Snapshotter) (int, error) {
	n := 0
	err := sn.Walk(context.Background(), func(context.Context, snapshots.Info) error {
		n++
		return nil
	})
	return n, err
}

// newEmptySnapshotter is the suite's SnapshotterFunc: each test gets its own
// connection to the one daemon, and its cleanup empties the daemon so that
// the next test starts from a fresh, empty snapshotter.
func newEmptySnapshotter(ctx context.Context, _ string) (snapshots.Snapshotter, func() error, error) {
	sn, closeConn, err := dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	if n, err := countSnapshots(sn); err != nil || n != 0 {
		closeConn()
		return nil, nil, fmt.Errorf("snapshotter not empty at test start: %d snapshots (walk error: %v)", n, err)
	}
	cleanup := func() error {
		err := removeAll(sn)
		if n, werr := countSnapshots(sn); err == nil && (werr != nil || n != 0) {
			err = fmt.Errorf("%d snapshots left after cleanup (walk error: %v)", n, werr)
		}
		if cerr := closeConn(); err == nil {
			err = cerr
		}
		return err
	}
	return sn, cleanup, nil
}

func TestSnapshotterSuite(t *testing.T) {
	testutil.RequiresRoot(t)
	testsuite.SnapshotterSuite(t, "thinsnap", newEmptySnapshotter)
}

// requireBlockMount checks the shape Kata and Firecracker need to hand a
// snapshot to a VM as a block device: exactly one mount, a block-device node
// as Source, ext4 as Type, and `ro` exactly when the snapshot is read-only.
func requireBlockMount(t *testing.T, what string, mounts []mount.Mount, readOnly bool) {
	t.Helper()
	if len(mounts) != 1 {
		t.Fatalf("%s: want exactly 1 mount, got %d: %+v", what, len(mounts), mounts)
	}
	m := mounts[0]
	if m.Type != "ext4" {
		t.Errorf("%s: Type = %q, want ext4", what, m.Type)
	}
	var st unix.Stat_t
	if err := unix.Stat(m.Source, &st); err != nil {
		t.Errorf("%s: stat Source %q: %v", what, m.Source, err)
	} else if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Errorf("%s: Source %q is not a block device (mode %o)", what, m.Source, st.Mode)
	}
	hasRO := false
	for _, o := range m.Options {
		if o == "ro" {
			hasRO = true
		}
	}
	if hasRO != readOnly {
		t.Errorf("%s: options %q: want ro=%v", what, m.Options, readOnly)
	}
	t.Logf("%s: %s %s %s", what, m.Type, m.Source, strings.Join(m.Options, ","))
}

func TestKataMountShape(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := namespaces.WithNamespace(context.Background(), "kata")
	sn, cleanup, err := newEmptySnapshotter(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}()
	work := t.TempDir()

	active, err := sn.Prepare(ctx, "kata/active", "")
	if err != nil {
		t.Fatal(err)
	}
	requireBlockMount(t, "Prepare(root)", active, false)
	again, err := sn.Mounts(ctx, "kata/active")
	if err != nil {
		t.Fatal(err)
	}
	requireBlockMount(t, "Mounts(active)", again, false)

	// Write through the block device so the view below has content to show.
	target := filepath.Join(work, "rw")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(active, target); err != nil {
		t.Fatalf("mount active: %v", err)
	}
	werr := os.WriteFile(filepath.Join(target, "hello"), []byte("kata\n"), 0o644)
	if err := mount.UnmountAll(target, 0); err != nil {
		t.Fatalf("unmount active: %v", err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	if err := sn.Commit(ctx, "kata/layer", "kata/active"); err != nil {
		t.Fatal(err)
	}

	view, err := sn.View(ctx, "kata/view", "kata/layer")
	if err != nil {
		t.Fatal(err)
	}
	requireBlockMount(t, "View", view, true)
	again, err = sn.Mounts(ctx, "kata/view")
	if err != nil {
		t.Fatal(err)
	}
	requireBlockMount(t, "Mounts(view)", again, true)

	child, err := sn.Prepare(ctx, "kata/child", "kata/layer")
	if err != nil {
		t.Fatal(err)
	}
	requireBlockMount(t, "Prepare(child)", child, false)

	// The view must mount read-only and show the parent's content.
	roTarget := filepath.Join(work, "ro")
	if err := os.Mkdir(roTarget, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(view, roTarget); err != nil {
		t.Fatalf("mount view: %v", err)
	}
	defer func() {
		if err := mount.UnmountAll(roTarget, 0); err != nil {
			t.Errorf("unmount view: %v", err)
		}
	}()
	data, err := os.ReadFile(filepath.Join(roTarget, "hello"))
	if err != nil || string(data) != "kata\n" {
		t.Errorf("view content: %q, %v", data, err)
	}
	if err := os.WriteFile(filepath.Join(roTarget, "nope"), nil, 0o644); err == nil {
		t.Errorf("write to view succeeded; want EROFS")
	}
}
