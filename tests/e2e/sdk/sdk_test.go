// Package sdk drives thinsnap through containerd's Go client SDK (Debian's
// containerd 1.6 sources, GOPATH mode), the way a Go program embedding
// containerd chooses a snapshotter: WithPullSnapshotter to unpack an image,
// WithSnapshotter and WithNewSnapshot (with the containerd.io/snapshot/max-size
// label) for a container. Run by run-in-vm.sh against a live containerd whose
// proxy snapshotter "thinsnap" is a thinsnapd on a loop pool, and a registry
// serving the image.
package sdk

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots"
)

// maxSizeLabel is containerd's standard hint for a snapshot's size.
const maxSizeLabel = "containerd.io/snapshot/max-size"

var (
	address  = flag.String("containerd.address", "", "containerd socket")
	ref      = flag.String("image", "", "image reference, served over plain HTTP")
	baseSize = flag.Int64("base-size", 10<<30, "thinsnapd's base_size in bytes")
	maxSize  = flag.Int64("max-size", 16<<30, "value of the max-size label on the container's snapshot")
	readFile = flag.String("image-file", "/data/keep.txt", "file of the image the task prints")
	wantFile = flag.String("image-file-content", "layer3", "content of -image-file")
)

const snapshotter = "thinsnap"

func TestSDKEndToEnd(t *testing.T) {
	if *address == "" || *ref == "" {
		t.Fatal("-containerd.address and -image are required (run by tests/e2e/sdk/run-in-vm.sh)")
	}
	client, err := containerd.New(*address, containerd.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("connect to containerd: %v", err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "sdk"), 15*time.Minute)
	defer cancel()

	// --- pull with WithPullSnapshotter --------------------------------------------------------
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts)),
	})
	start := time.Now()
	image, err := client.Pull(ctx, *ref, containerd.WithResolver(resolver), containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter))
	if err != nil {
		t.Fatalf("Pull(%s, WithPullSnapshotter(%q)): %v", *ref, snapshotter, err)
	}
	t.Logf("pulled %s into %s in %v", image.Name(), snapshotter, time.Since(start).Round(time.Millisecond))
	if ok, err := image.IsUnpacked(ctx, snapshotter); err != nil || !ok {
		t.Fatalf("IsUnpacked(%q) = %v, %v; want true", snapshotter, ok, err)
	}
	// The option must have taken effect: nothing went to containerd's default snapshotter.
	if n := countSnapshots(ctx, t, client, containerd.DefaultSnapshotter); n != 0 {
		t.Fatalf("%d snapshots in %s after a pull into %s", n, containerd.DefaultSnapshotter, snapshotter)
	}
	layers := countSnapshots(ctx, t, client, snapshotter)
	t.Logf("%d committed layer snapshots in %s", layers, snapshotter)

	// --- container with WithSnapshotter + WithNewSnapshot and the max-size label --------------
	const id = "sdk-c1"
	const snapKey = "sdk-c1-rootfs"
	size := strconv.FormatInt(*maxSize, 10)
	// -P: one line per filesystem (busybox wraps long device names otherwise).
	script := fmt.Sprintf("df -P -k / && df -P -h / && echo FILE: $(cat %s)", *readFile)
	container, err := client.NewContainer(ctx, id,
		containerd.WithImage(image),
		containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshot(snapKey, image, snapshots.WithLabels(map[string]string{maxSizeLabel: size})),
		containerd.WithNewSpec(oci.WithImageConfig(image), oci.WithProcessArgs("/bin/sh", "-c", script)))
	if err != nil {
		t.Fatalf("NewContainer(WithSnapshotter, WithNewSnapshot + %s=%s): %v", maxSizeLabel, size, err)
	}
	containerGone := false
	defer func() {
		if !containerGone {
			_ = container.Delete(ctx, containerd.WithSnapshotCleanup)
		}
	}()

	sn := client.SnapshotService(snapshotter)
	info, err := sn.Stat(ctx, snapKey)
	if err != nil {
		t.Fatalf("Stat(%s): %v", snapKey, err)
	}
	if info.Kind != snapshots.KindActive || info.Labels[maxSizeLabel] != size {
		t.Fatalf("Stat(%s) = kind %v labels %v; want an active snapshot with %s=%s", snapKey, info.Kind,
			info.Labels, maxSizeLabel, size)
	}
	// Kata shape: one mount, the snapshot's own block device, ext4 on it.
	mounts, err := sn.Mounts(ctx, snapKey)
	if err != nil {
		t.Fatalf("Mounts(%s): %v", snapKey, err)
	}
	if len(mounts) != 1 {
		t.Fatalf("Mounts(%s) = %+v; want exactly one mount", snapKey, mounts)
	}
	m := mounts[0]
	st, err := os.Stat(m.Source)
	if err != nil {
		t.Fatalf("mount source %s: %v", m.Source, err)
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 || m.Type != "ext4" {
		t.Fatalf("mount %+v (source mode %v); want type ext4 on a block device node", m, st.Mode())
	}
	t.Logf("mount: type=%s source=%s options=%v", m.Type, m.Source, m.Options)

	// --- a task that shows df of / and a file of the image -------------------------------------
	var stdout, stderr bytes.Buffer
	task, err := container.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr)))
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	exitC, err := task.Wait(ctx)
	if err != nil {
		t.Fatalf("task Wait: %v", err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("task Start: %v", err)
	}
	status := <-exitC
	code, _, err := status.Result()
	if err != nil {
		t.Fatalf("task result: %v", err)
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatalf("task Delete: %v", err)
	}
	out := stdout.String()
	t.Logf("task exited %d; stdout:\n%s", code, out)
	if code != 0 {
		t.Fatalf("task exited with %d; stderr: %s", code, stderr.String())
	}
	if !strings.Contains(out, "FILE: "+*wantFile+"\n") {
		t.Errorf("task output lacks %s = %q", *readFile, *wantFile)
	}
	total, dfLine, err := dfTotalBytes(out)
	if err != nil {
		t.Fatalf("df output: %v", err)
	}
	t.Logf("df line seen in the container: %s", dfLine)
	// ext4 keeps some blocks for its metadata, so the total df reports is a
	// little below the device size: above base_size and within 5% of the label
	// means the snapshot grew to the requested size.
	if total <= *baseSize || total > *maxSize || total < *maxSize/100*95 {
		t.Errorf("df reports %d bytes for /; want the grown size: above base_size %d, within 5%% below max-size %d",
			total, *baseSize, *maxSize)
	}

	// --- delete everything; nothing may be left -------------------------------------------------
	if err := container.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		t.Fatalf("container Delete(WithSnapshotCleanup): %v", err)
	}
	containerGone = true
	if err := client.ImageService().Delete(ctx, *ref, images.SynchronousDelete()); err != nil {
		t.Fatalf("image Delete(SynchronousDelete): %v", err)
	}
	if n := countSnapshots(ctx, t, client, snapshotter); n != 0 {
		t.Fatalf("%d snapshots left in %s after deleting the container and the image", n, snapshotter)
	}
	t.Logf("container, image and all %d layer snapshots deleted", layers)
}

func countSnapshots(ctx context.Context, t *testing.T, client *containerd.Client, name string) int {
	t.Helper()
	n := 0
	if err := client.SnapshotService(name).Walk(ctx, func(context.Context, snapshots.Info) error {
		n++
		return nil
	}); err != nil {
		t.Fatalf("Walk(%s): %v", name, err)
	}
	return n
}

// dfTotalBytes reads the size of / from `df -P -k /` output ("Filesystem
// 1024-blocks Used Available Capacity Mounted on", then the filesystem's line).
func dfTotalBytes(out string) (int64, string, error) {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.Contains(l, "1024-blocks") || i+1 >= len(lines) {
			continue
		}
		f := strings.Fields(lines[i+1])
		if len(f) < 6 || f[len(f)-1] != "/" {
			return 0, "", fmt.Errorf("unexpected df line %q", lines[i+1])
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("df line %q: %v", lines[i+1], err)
		}
		return kb * 1024, lines[i+1], nil
	}
	return 0, "", fmt.Errorf("no `df -P -k` header in %q", out)
}
