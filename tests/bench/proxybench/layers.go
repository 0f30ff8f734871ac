// The 128LayersMount scenario of containerd's snapshots/testsuite
// (check128LayersMount in snapshots/testsuite/testsuite.go, containerd
// 1.6.20), step for step, timed on thinsnapd and on containerd's devmapper
// snapshotter side by side (issue 17 item 1): each layer is a Prepare of the
// previous committed layer, mounted, compared with a flat reference
// directory, written, compared again, unmounted (MNT_DETACH, as the suite's
// testutil.Unmount does on Linux) and committed; then a View of the top layer
// is mounted and compared. The suite's function is unexported, hence the copy.
//
// The figures are printed, never judged; any failed step is fatal.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/continuity/fs/fstest"
	"golang.org/x/sys/unix"
)

var (
	layers       = flag.Int("layers", 0, "run the 128LayersMount scenario with this many layers (containerd's suite: 128) instead of the usual figures")
	layersWork   = flag.String("layers-work", "", "directory for the scenario's mount points and flat reference (default: a temporary one)")
	layersTarget = flag.Float64("layers-target", 0.1, "target ratio of thinsnap's time to devmapper's, printed beside the figures")
)

// layerSteps holds one run's durations: the whole scenario and each step of every layer.
type layerSteps struct {
	total                               time.Duration
	prepare, mnt, apply, umount, commit []time.Duration
	view                                time.Duration // View + mount + compare of the top layer
}

func (s *layerSteps) print(label string) {
	med := func(d []time.Duration) string { return ms(newStats(d).pct(50)) }
	max := func(d []time.Duration) string { return ms(newStats(d).pct(100)) }
	sum := func(d []time.Duration) float64 {
		var t time.Duration
		for _, x := range d {
			t += x
		}
		return t.Seconds()
	}
	fmt.Printf("%-9s %d layers in %.1f s (then View of the top %s)\n", label, len(s.commit), s.total.Seconds(), ms(s.view))
	fmt.Printf("%-9s   step medians: prepare %s  mount %s  apply+compare %s  unmount %s  commit %s\n",
		label, med(s.prepare), med(s.mnt), med(s.apply), med(s.umount), med(s.commit))
	fmt.Printf("%-9s   step maxima:  prepare %s  mount %s  apply+compare %s  unmount %s  commit %s\n",
		label, max(s.prepare), max(s.mnt), max(s.apply), max(s.umount), max(s.commit))
	fmt.Printf("%-9s   step totals:  prepare %.1f s  mount %.1f s  apply+compare %.1f s  unmount %.1f s  commit %.1f s\n",
		label, sum(s.prepare), sum(s.mnt), sum(s.apply), sum(s.umount), sum(s.commit))
}

// layerAppliers are the suite's: a bottom layer, then n-1 layers that each
// overwrite one file, add one, and replace a directory.
func layerAppliers(n int) []fstest.Applier {
	appliers := []fstest.Applier{fstest.Apply(
		fstest.CreateFile("/bottom", []byte("way at the bottom\n"), 0777),
		fstest.CreateFile("/overwriteme", []byte("FIRST!\n"), 0777),
		fstest.CreateDir("/ADDHERE", 0755),
		fstest.CreateDir("/ONLYME", 0755),
		fstest.CreateFile("/ONLYME/bottom", []byte("bye!\n"), 0777),
	)}
	for i := 1; i < n; i++ {
		appliers = append(appliers, fstest.Apply(
			fstest.CreateFile("/overwriteme", []byte(fmt.Sprintf("%d WAS HERE!\n", i)), 0777),
			fstest.CreateFile(fmt.Sprintf("/ADDHERE/file-%d", i), []byte("same\n"), 0755),
			fstest.RemoveAll("/ONLYME"),
			fstest.CreateDir("/ONLYME", 0755),
			fstest.CreateFile(fmt.Sprintf("/ONLYME/file-%d", i), []byte("only me!\n"), 0777),
		))
	}
	return appliers
}

// unmount is the suite's testutil.Unmount on Linux: a lazy unmount.
func unmount(target string) {
	if err := mount.UnmountAll(target, unix.MNT_DETACH); err != nil {
		fatalf("unmount %s: %v", target, err)
	}
}

// runLayers runs the scenario once on `sn` under `work` and removes every
// snapshot it made (untimed) before it returns.
func (b *bench) runLayers(label, work string, n int) layerSteps {
	if err := os.MkdirAll(work, 0o755); err != nil {
		fatalf("mkdir %s: %v", work, err)
	}
	flat := filepath.Join(work, "flat")
	if err := os.MkdirAll(flat, 0o777); err != nil {
		fatalf("mkdir %s: %v", flat, err)
	}
	opt := snapshots.WithLabels(map[string]string{"containerd.io/gc.root": time.Now().UTC().Format(time.RFC3339)})
	var s layerSteps
	var made []string // every snapshot, in creation order
	parent := ""
	start := time.Now()
	for i, applier := range layerAppliers(n) {
		// Keys are the suite's (paths under its work directory), made unique per run.
		preparing := filepath.Join(work, fmt.Sprintf("prepare-layer-%d", i))
		if err := os.MkdirAll(preparing, 0o777); err != nil {
			fatalf("[layer %d] mkdir %s: %v", i, preparing, err)
		}
		t0 := time.Now()
		mounts, err := b.sn.Prepare(b.ctx, preparing, parent, opt)
		b.must(err, fmt.Sprintf("[layer %d] prepare", i), preparing)
		t1 := time.Now()
		if err := mount.All(mounts, preparing); err != nil {
			fatalf("[layer %d] mount %s: %v", i, preparing, err)
		}
		t2 := time.Now()
		if err := fstest.CheckDirectoryEqual(preparing, flat); err != nil {
			unmount(preparing)
			fatalf("[layer %d] preparing differs from flat before apply: %v", i, err)
		}
		if err := applier.Apply(flat); err != nil {
			fatalf("[layer %d] apply to flat: %v", i, err)
		}
		if err := applier.Apply(preparing); err != nil {
			unmount(preparing)
			fatalf("[layer %d] apply to preparing: %v", i, err)
		}
		if err := fstest.CheckDirectoryEqual(preparing, flat); err != nil {
			unmount(preparing)
			fatalf("[layer %d] preparing differs from flat after apply: %v", i, err)
		}
		t3 := time.Now()
		unmount(preparing)
		t4 := time.Now()
		parent = filepath.Join(work, fmt.Sprintf("committed-%d", i))
		b.must(b.sn.Commit(b.ctx, parent, preparing, opt), fmt.Sprintf("[layer %d] commit", i), preparing)
		t5 := time.Now()
		made = append(made, parent)
		s.prepare = append(s.prepare, t1.Sub(t0))
		s.mnt = append(s.mnt, t2.Sub(t1))
		s.apply = append(s.apply, t3.Sub(t2))
		s.umount = append(s.umount, t4.Sub(t3))
		s.commit = append(s.commit, t5.Sub(t4))
	}
	view := filepath.Join(work, "fullview")
	if err := os.MkdirAll(view, 0o777); err != nil {
		fatalf("mkdir %s: %v", view, err)
	}
	t0 := time.Now()
	mounts, err := b.sn.View(b.ctx, view, parent, opt)
	b.must(err, "view", view)
	made = append(made, view)
	if err := mount.All(mounts, view); err != nil {
		fatalf("mount view %s: %v", view, err)
	}
	if err := fstest.CheckDirectoryEqual(view, flat); err != nil {
		unmount(view)
		fatalf("the full view differs from flat: %v", err)
	}
	s.view = time.Since(t0)
	s.total = time.Since(start)
	unmount(view)

	// Untimed: leave the snapshotter as the suite's cleanup does, children first.
	t0 = time.Now()
	for i := len(made) - 1; i >= 0; i-- {
		b.must(b.sn.Remove(b.ctx, made[i]), "remove", made[i])
	}
	b.settle()
	fmt.Printf("%-9s removed the %d snapshots (and waited for Cleanup) in %.1f s\n", label, len(made), time.Since(t0).Seconds())
	return s
}

// layersMain runs the scenario on each thinsnapd socket, then on containerd's
// devmapper snapshotter (when -devmapper-pool is given, served in-process on
// its own pool), and prints thinsnap's time beside devmapper's and the target.
func layersMain(ctx context.Context) {
	type target struct{ label, socket string }
	var targets []target
	if *socketPath != "" {
		if *abSocket != "" {
			names := strings.SplitN(*abLabels, ",", 2)
			if len(names) != 2 {
				fatalf("-ab-labels wants two names separated by a comma")
			}
			targets = append(targets, target{names[0], *socketPath}, target{names[1], *abSocket})
		} else {
			targets = append(targets, target{*label, *socketPath})
		}
	}
	if *dmPool != "" {
		targets = append(targets, target{"devmapper", ""})
	}
	if len(targets) == 0 {
		fatalf("-layers wants -socket and/or -devmapper-pool")
	}
	work := *layersWork
	if work == "" {
		dir, err := os.MkdirTemp("", "proxybench-layers-")
		if err != nil {
			fatalf("temporary directory: %v", err)
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	results := map[string]layerSteps{}
	for _, t := range targets {
		socket := t.socket
		if socket == "" {
			sock, stop := serveDevmapper(ctx)
			defer stop()
			socket = sock
		}
		sn, conn := dial(socket)
		b := &bench{sn: sn, ctx: ctx}
		fmt.Printf("%-9s == 128LayersMount (containerd snapshots/testsuite), %d layers ==\n", t.label, *layers)
		s := b.runLayers(t.label, filepath.Join(work, t.label), *layers)
		conn.Close()
		s.print(t.label)
		results[t.label] = s
	}
	dm, ok := results["devmapper"]
	if !ok {
		return
	}
	for _, t := range targets[:len(targets)-1] {
		ts := results[t.label]
		fmt.Printf("%s %.1f s, devmapper %.1f s, ratio %.2f (target <= %g)\n", t.label,
			ts.total.Seconds(), dm.total.Seconds(), ts.total.Seconds()/dm.total.Seconds(), *layersTarget)
	}
}
