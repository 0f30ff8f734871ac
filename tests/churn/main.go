// thinsnap_churn: VM tests of removal and reclaim under realistic use, driven
// through containerd's own snapshots/proxy client (issue 15, items 3, 4 and 6).
// Built on the host in GOPATH mode against Debian's containerd 1.6.20 sources;
// run as root in the test VM by the scripts beside it.
//
//	thinsnap_churn churn   -socket S -metrics URL -pool P ...  # 16 clients preparing, mounting,
//	                                                           # writing and removing for 60 s
//	thinsnap_churn devname -socket S ...   # a removed snapshot's device path is never handed out
//	                                       # again; Remove and Commit racing on one key
//	thinsnap_churn fdio    -fd 3 ...       # pread/pwrite through a descriptor the caller holds
//
// Each mode prints its figures and exits 1 on the first failure it judges.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
)

func fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "thinsnap_churn: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...interface{}) {
	fmt.Printf("[%s] "+format+"\n", append([]interface{}{time.Now().Format("15:04:05")}, args...)...)
}

// dial wraps a connection to `socket` in containerd's proxy snapshotter. One
// connection per caller: contention happens in the daemon, not in a shared
// HTTP/2 connection.
func dial(socket string) (snapshots.Snapshotter, *grpc.ClientConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, dialer.DialAddress(socket), grpc.WithInsecure(),
		grpc.WithBlock(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		fatalf("dial %s: %v", socket, err)
	}
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "thinsnap"), conn
}

// namespaced is the context every call runs in, bounded by `timeout`.
func namespaced(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(namespaces.WithNamespace(context.Background(), "churn"), timeout)
}

// mountAt mounts what Prepare or View answered (one block-device mount) on dir.
func mountAt(mounts []mount.Mount, dir string) error {
	if len(mounts) != 1 {
		return fmt.Errorf("want exactly one mount, got %d: %+v", len(mounts), mounts)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := mounts[0].Mount(dir); err != nil {
		return fmt.Errorf("mount -t %s -o %v %s %s: %w", mounts[0].Type, mounts[0].Options,
			mounts[0].Source, dir, err)
	}
	return nil
}

func unmount(dir string) error {
	if err := mount.Unmount(dir, 0); err != nil {
		return fmt.Errorf("umount %s: %w", dir, err)
	}
	return nil
}

// writeSynced writes data to path and fsyncs it.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pct is the nearest-rank percentile of d (sorted in place).
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(p/100*float64(len(d))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(d) {
		i = len(d) - 1
	}
	return d[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func main() {
	if len(os.Args) < 2 {
		fatalf("usage: %s churn|devname|fdio [flags]", os.Args[0])
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "churn":
		runChurn(args)
	case "devname":
		runDevname(args)
	case "fdio":
		runFdio(args)
	default:
		fatalf("unknown mode %q (churn, devname or fdio)", os.Args[1])
	}
}
