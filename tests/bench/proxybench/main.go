// proxybench: latency and concurrency figures for a snapshotter, measured
// through containerd's own snapshots/proxy gRPC client, i.e. the path every
// call from containerd takes to a proxy plugin.
//
// It reports
//   - N sequential Prepare+Commit+Remove cycles on a root snapshot, and on a
//     child of a committed parent: median, p90 and per-step medians;
//   - the wall time of 1 Prepare against 16 parallel Prepares (distinct keys,
//     of the committed parent and of the root), and their ratio.
//
// The figures are printed, never judged: the program fails only when a
// snapshot operation fails. Built on the host in GOPATH mode against Debian's
// containerd 1.6.20 sources; run as root in the test VM by run-in-vm.sh.
//
//	proxybench -socket /tmp/thinsnap.sock            # a running thinsnapd
//	proxybench -devmapper-pool P -devmapper-root D   # containerd's devmapper
//	                                                 # snapshotter, served in-process
//	proxybench -socket A -ab-socket B                # single root Prepares on A and B,
//	                                                 # interleaved: p50 of each, side by side
//	proxybench -socket S -floor F                    # also the targets against the kernel
//	                                                 # floor in F (dm_floor_bench --out)
//	proxybench -layers 128 -socket S -devmapper-pool P -devmapper-root D
//	                                                 # containerd's 128LayersMount on both,
//	                                                 # side by side (layers.go)
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/devmapper"
	"github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
)

var (
	socketPath   = flag.String("socket", "", "unix socket of the snapshotter under test (thinsnapd)")
	cycles       = flag.Int("cycles", 40, "measured Prepare+Commit+Remove cycles per variant")
	warmup       = flag.Int("warmup", 3, "unmeasured cycles before each variant")
	parallel     = flag.Int("parallel", 16, "Prepares issued at once in the concurrency test")
	rounds       = flag.Int("rounds", 5, "rounds of the 1-vs-parallel test (medians are reported)")
	label        = flag.String("label", "thinsnap", "name printed with the figures")
	dmPool       = flag.String("devmapper-pool", "", "bench containerd's devmapper snapshotter on this thin-pool instead")
	dmRoot       = flag.String("devmapper-root", "", "devmapper snapshotter root directory")
	dmBaseSize   = flag.String("devmapper-base-size", "1GB", "devmapper base_image_size")
	abSocket     = flag.String("ab-socket", "", "instead of the usual figures, compare single root Prepares on -socket and on this socket, interleaved")
	abLabels     = flag.String("ab-labels", "a,b", "names of -socket and -ab-socket in the comparison")
	abSamples    = flag.Int("ab-samples", 200, "Prepares per snapshotter in the comparison")
	dmServerSock = flag.String("devmapper-socket", "", "socket to serve the devmapper snapshotter on (default: in -devmapper-root)")
	maxSize      = flag.String("max-size", "", "give every Prepare the containerd.io/snapshot/max-size label with this many bytes")
	floorFile    = flag.String("floor", "", "key=value figures of dm_floor_bench: print the targets against them")
)

func fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "proxybench: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// dial wraps a connection to `socket` in containerd's proxy snapshotter.
func dial(socket string) (snapshots.Snapshotter, *grpc.ClientConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, dialer.DialAddress(socket), grpc.WithInsecure(),
		grpc.WithBlock(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		fatalf("dial %s: %v", socket, err)
	}
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), *label), conn
}

// serveDevmapper starts containerd's devmapper snapshotter on `pool` and
// serves it with containerd's snapshot service on a unix socket, so that it
// is measured through exactly the same client path as thinsnapd.
func serveDevmapper(ctx context.Context) (string, func()) {
	if *dmRoot == "" {
		fatalf("-devmapper-root is required with -devmapper-pool")
	}
	sn, err := devmapper.NewSnapshotter(ctx, &devmapper.Config{
		RootPath:      *dmRoot,
		PoolName:      *dmPool,
		BaseImageSize: *dmBaseSize,
	})
	if err != nil {
		fatalf("devmapper snapshotter: %v", err)
	}
	sock := *dmServerSock
	if sock == "" {
		sock = filepath.Join(*dmRoot, "devmapper.sock")
	}
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		fatalf("listen %s: %v", sock, err)
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	go func() { _ = srv.Serve(l) }()
	return sock, func() {
		srv.GracefulStop()
		if err := sn.Close(); err != nil {
			fatalf("close devmapper snapshotter: %v", err)
		}
	}
}

type stats struct{ sorted []time.Duration }

func newStats(d []time.Duration) stats {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return stats{s}
}

// pct is the nearest-rank percentile.
func (s stats) pct(p float64) time.Duration {
	if len(s.sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(s.sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s.sorted) {
		i = len(s.sorted) - 1
	}
	return s.sorted[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%7.1f ms", float64(d.Microseconds())/1000) }

type bench struct {
	sn  snapshots.Snapshotter
	ctx context.Context
	run string // unique key prefix of this run
	seq int
	// The snapshotter answered Cleanup with NotImplemented (containerd's devmapper).
	noCleanup bool
}

func (b *bench) key(what string) string {
	b.seq++
	return fmt.Sprintf("%s/%s-%d", b.run, what, b.seq)
}

func (b *bench) must(err error, op, key string) {
	if err != nil {
		fatalf("%s %s: %v", op, key, err)
	}
}

// settle waits, through Cleanup, until the snapshotter has finished in the
// background what the Removes before it started (thinsnapd's reclaimer), so
// that the next timed step does not share the pool with that work. It returns
// how long that took; 0 for a snapshotter without Cleanup.
func (b *bench) settle() time.Duration {
	cleaner, ok := b.sn.(snapshots.Cleaner)
	if !ok || b.noCleanup {
		return 0
	}
	t0 := time.Now()
	if err := cleaner.Cleanup(b.ctx); err != nil {
		if errdefs.IsNotImplemented(err) {
			b.noCleanup = true
			return 0
		}
		fatalf("cleanup: %v", err)
	}
	return time.Since(t0)
}

// cycle runs Prepare(parent), Commit, Remove(committed), then an untimed-in-
// the-total Cleanup, and returns the duration of each of the four.
func (b *bench) cycle(parent string) [4]time.Duration {
	active, name := b.key("active"), b.key("committed")
	var d [4]time.Duration
	var opts []snapshots.Opt
	if *maxSize != "" {
		opts = append(opts, snapshots.WithLabels(map[string]string{"containerd.io/snapshot/max-size": *maxSize}))
	}
	t0 := time.Now()
	_, err := b.sn.Prepare(b.ctx, active, parent, opts...)
	b.must(err, "prepare", active)
	t1 := time.Now()
	b.must(b.sn.Commit(b.ctx, name, active), "commit", active)
	t2 := time.Now()
	b.must(b.sn.Remove(b.ctx, name), "remove", name)
	t3 := time.Now()
	d[0], d[1], d[2] = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2)
	d[3] = b.settle()
	return d
}

// cycles reports, and returns, the median of each step.
func (b *bench) cycles(what, parent string) [4]time.Duration {
	for i := 0; i < *warmup; i++ {
		d := b.cycle(parent)
		if i == 0 {
			// With -max-size, the first sized Prepare of a parent also grows it once.
			fmt.Printf("%-9s   first prepare %-14s %s (warm-up, not in the medians)\n", *label, what, ms(d[0]))
		}
	}
	var total []time.Duration
	var steps [4][]time.Duration
	for i := 0; i < *cycles; i++ {
		d := b.cycle(parent)
		total = append(total, d[0]+d[1]+d[2])
		for j := range d {
			steps[j] = append(steps[j], d[j])
		}
	}
	t := newStats(total)
	fmt.Printf("%-9s cycle %-14s n=%d  median %s  p90 %s  min %s  max %s\n", *label, what,
		len(total), ms(t.pct(50)), ms(t.pct(90)), ms(t.pct(0)), ms(t.pct(100)))
	var med [4]time.Duration
	for j := range steps {
		med[j] = newStats(steps[j]).pct(50)
	}
	fmt.Printf("%-9s   step medians:  prepare %s  commit %s  remove %s   then cleanup (background reclaim done) %s\n",
		*label, ms(med[0]), ms(med[1]), ms(med[2]), ms(med[3]))
	return med
}

// stats times Stat of an existing snapshot: one round trip through the proxy
// client and the daemon's metadata, the part of every call that is not the pool's.
func (b *bench) stats(key string) time.Duration {
	var d []time.Duration
	for i := 0; i < *warmup+*cycles; i++ {
		t0 := time.Now()
		_, err := b.sn.Stat(b.ctx, key)
		b.must(err, "stat", key)
		if i >= *warmup {
			d = append(d, time.Since(t0))
		}
	}
	st := newStats(d)
	fmt.Printf("%-9s stat (committed)     n=%d  median %s  p90 %s\n", *label, len(d), ms(st.pct(50)), ms(st.pct(90)))
	return st.pct(50)
}

// prepares issues n Prepares of `parent` at once and returns the wall time
// until the last one returned; the snapshots are removed afterwards, untimed.
func (b *bench) prepares(n int, parent string) time.Duration {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = b.key("par")
	}
	errs := make([]error, n)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range keys {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start.Wait()
			_, errs[i] = b.sn.Prepare(b.ctx, keys[i], parent)
		}(i)
	}
	t0 := time.Now()
	start.Done()
	wg.Wait()
	wall := time.Since(t0)
	for i, err := range errs {
		b.must(err, "prepare", keys[i])
	}
	for _, k := range keys {
		b.must(b.sn.Remove(b.ctx, k), "remove", k)
	}
	b.settle()
	return wall
}

// concurrency reports, and returns, the median wall time of `parallel` Prepares.
func (b *bench) concurrency(what, parent string) time.Duration {
	b.prepares(1, parent) // warm-up
	// Single Prepares are cheap and noisy: take three per round, interleaved
	// with the parallel bursts so that both see the same machine load.
	var one, many []time.Duration
	for r := 0; r < *rounds; r++ {
		for i := 0; i < 3; i++ {
			one = append(one, b.prepares(1, parent))
		}
		many = append(many, b.prepares(*parallel, parent))
	}
	o, m := newStats(one).pct(50), newStats(many).pct(50)
	fmt.Printf("%-9s prepare %-12s 1: median %s   %d parallel: median wall %s (max %s)   ratio %.2fx\n",
		*label, what, ms(o), *parallel, ms(m), ms(newStats(many).pct(100)),
		float64(m)/float64(o))
	return m
}

// readFloor parses dm_floor_bench's key=value lines (milliseconds).
func readFloor(path string) map[string]float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		fatalf("read floor figures: %v", err)
	}
	floor := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			fatalf("%s: malformed line %q", path, line)
		}
		floor[k] = f
	}
	for _, k := range []string{"prepare_ms", "deactivate_ms", "delete_ms", "parallel_wall_ms"} {
		if _, ok := floor[k]; !ok {
			fatalf("%s has no %s", path, k)
		}
	}
	return floor
}

// printTargets sets each figure beside its target (issue 12): within 1.5x of
// the kernel's own cost, plus one Stat round trip for a single call.
func printTargets(floor map[string]float64, steps [4]time.Duration, parallelWall, stat time.Duration) {
	msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	statMs := msf(stat)
	fmt.Printf("%-9s == targets: thinsnap beside 1.5x the raw kernel (dm_floor_bench, this VM run) ==\n", *label)
	row := func(what string, got, base float64, how string) {
		target := 1.5 * base
		verdict := "met"
		if got > target {
			verdict = "MISSED"
		}
		fmt.Printf("%-9s %-26s %7.1f ms   target <= 1.5 x (%s) = %7.1f ms   %5.2fx the base   %s\n",
			*label, what, got, how, target, got/base, verdict)
	}
	row("Prepare p50 (child)", msf(steps[0]), floor["prepare_ms"]+statMs,
		fmt.Sprintf("create_snap+activate %.1f + Stat %.1f", floor["prepare_ms"], statMs))
	row(fmt.Sprintf("%d parallel Prepares", *parallel), msf(parallelWall), floor["parallel_wall_ms"],
		fmt.Sprintf("raw %d parallel %.1f", *parallel, floor["parallel_wall_ms"]))
	row("Commit p50 (child)", msf(steps[1]), floor["deactivate_ms"]+statMs,
		fmt.Sprintf("deactivate %.1f + Stat %.1f", floor["deactivate_ms"], statMs))
	row("Remove p50 (child)", msf(steps[2]), floor["delete_ms"]+statMs,
		fmt.Sprintf("delete %.1f + Stat %.1f", floor["delete_ms"], statMs))
}

// compareAB times single root Prepares (each removed untimed) on two
// snapshotters, alternating A,B then B,A so that both see the same machine
// load and neither always goes first, and prints their medians side by side.
func compareAB(ctx context.Context) {
	labels := strings.SplitN(*abLabels, ",", 2)
	if len(labels) != 2 {
		fatalf("-ab-labels wants two names separated by a comma")
	}
	var benches [2]*bench
	for i, socket := range []string{*socketPath, *abSocket} {
		sn, conn := dial(socket)
		defer conn.Close()
		benches[i] = &bench{sn: sn, ctx: ctx, run: fmt.Sprintf("proxybench-ab%d-%d-%d", i, os.Getpid(), time.Now().UnixNano())}
	}
	var samples [2][]time.Duration
	for i := 0; i < *warmup+*abSamples; i++ {
		for j := 0; j < 2; j++ {
			which := (i + j) % 2
			wall := benches[which].prepares(1, "")
			if i >= *warmup {
				samples[which] = append(samples[which], wall)
			}
		}
	}
	fmt.Printf("== single root Prepare, %d samples each (after %d warm-up), interleaved ==\n", *abSamples, *warmup)
	for i := range samples {
		st := newStats(samples[i])
		fmt.Printf("%-12s p50 %s  p90 %s  min %s\n", labels[i], ms(st.pct(50)), ms(st.pct(90)), ms(st.pct(0)))
	}
	a, b := newStats(samples[0]).pct(50), newStats(samples[1]).pct(50)
	fmt.Printf("Prepare p50: %s %s vs %s %s: %+.1f%% (target: within 2%%)\n", labels[0], ms(a), labels[1], ms(b),
		100*(float64(b)-float64(a))/float64(a))
	// Sample i of A and of B ran back to back, so their difference cancels
	// the machine's drift; its median is the steadier reading of the cost.
	diffs := make([]float64, len(samples[0]))
	for i := range diffs {
		diffs[i] = float64(samples[1][i] - samples[0][i])
	}
	sort.Float64s(diffs)
	d := diffs[len(diffs)/2]
	fmt.Printf("paired: median of (%s - %s) over %d back-to-back pairs: %+.2f ms = %+.1f%% of %s's p50\n",
		labels[1], labels[0], len(diffs), d/1e6, 100*d/float64(a), labels[0])
}

func main() {
	flag.Parse()
	ctx := namespaces.WithNamespace(context.Background(), "proxybench")
	if *layers > 0 {
		layersMain(ctx)
		return
	}
	socket := *socketPath
	if *dmPool != "" {
		sock, stop := serveDevmapper(ctx)
		defer stop()
		socket = sock
	} else if socket == "" {
		fatalf("-socket or -devmapper-pool is required")
	}
	if *abSocket != "" {
		compareAB(ctx)
		return
	}
	if *scaleSnapshots > 0 {
		runScale(ctx, socket)
		return
	}
	sn, conn := dial(socket)
	defer conn.Close()

	b := &bench{sn: sn, ctx: ctx, run: fmt.Sprintf("proxybench-%d-%d", os.Getpid(), time.Now().UnixNano())}
	// A committed parent for the child variants.
	parentActive, parent := b.key("parent-active"), b.key("parent")
	_, err := sn.Prepare(ctx, parentActive, "")
	b.must(err, "prepare", parentActive)
	b.must(sn.Commit(ctx, parent, parentActive), "commit", parentActive)

	fmt.Printf("%-9s == sequential Prepare+Commit+Remove (%d cycles after %d warm-up) ==\n",
		*label, *cycles, *warmup)
	b.cycles("(root)", "")
	childSteps := b.cycles("(child)", parent)
	stat := b.stats(parent)
	fmt.Printf("%-9s == 1 Prepare (%d samples) vs %d parallel Prepares (%d rounds), wall time ==\n",
		*label, 3**rounds, *parallel, *rounds)
	childParallel := b.concurrency("(child)", parent)
	b.concurrency("(root)", "")
	if *floorFile != "" {
		printTargets(readFloor(*floorFile), childSteps, childParallel, stat)
	}

	b.must(sn.Remove(ctx, parent), "remove", parent)
	var left []string
	b.must(sn.Walk(context.Background(), func(_ context.Context, info snapshots.Info) error {
		if len(info.Name) > len(b.run) && info.Name[:len(b.run)] == b.run {
			left = append(left, info.Name)
		}
		return nil
	}), "walk", "")
	if len(left) > 0 {
		fatalf("snapshots left behind: %v", left)
	}
	fmt.Printf("%-9s proxybench: all operations succeeded\n", *label)
}
