// The scale bench (issue 12): many snapshots in one pool, through the same
// proxy client as the rest of proxybench. run-in-vm.sh's scale mode runs it
// once per start of thinsnapd:
//
//	-scale-phase build           Prepare p50 on the empty pool; build the
//	                             snapshots; Prepare p50 again at that size
//	-scale-phase restart         start-up time (from -scale-exec-ns, the
//	                             daemon's exec to a served Stat), then List
//	-scale-phase restart-remove  the same, then remove them all
//	-scale-phase compare         single root Prepares on -socket (the full
//	                             pool) and -scale-empty-socket (a second
//	                             thinsnapd on an empty pool), interleaved, so
//	                             that a machine whose load changes during the
//	                             run (other VMs) weighs on both alike
//	-scale-phase list            List alone, on the host in about a minute instead of
//	                             the VM's quarter of an hour: builds the
//	                             snapshots untimed on an empty snapshotter
//	                             (fake_thinsnapd, the serving stack over the
//	                             in-memory pool), then times Lists
//	                             (tests/bench/list-on-host.sh, ctest
//	                             bench_list_host)
//
// Layout: a tenth (-scale-active-percent) of -scale-snapshots are active, the
// rest are committed, in chains of -scale-chain (a root Prepare+Commit, then
// each link a Prepare of the previous one + Commit). The active snapshots are
// Prepares on the chain tips, dealt round-robin. 10,000 at 10 % is 450 chains
// of 20 committed snapshots (9,000) and 1,000 active ones: 100 tips carry 3,
// the other 350 carry 2.
//
// The figures are printed beside their targets, never judged: like the rest
// of proxybench it fails only when an operation fails or the snapshots found
// are not the ones built.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/snapshots"
)

var (
	scaleSnapshots = flag.Int("scale-snapshots", 0, "run the scale bench with this many snapshots instead of the usual figures")
	scaleChain     = flag.Int("scale-chain", 20, "committed snapshots per chain in the scale bench")
	scaleActivePct = flag.Int("scale-active-percent", 10, "percentage of the scale bench's snapshots left active")
	scalePhase     = flag.String("scale-phase", "build", "scale bench phase: build, restart, restart-remove, compare or list")
	scaleLists     = flag.Int("scale-lists", 5, "timed Lists in each phase that lists (more, to profile the server)")
	scaleSamples   = flag.Int("scale-samples", 40, "timed Prepares for each Prepare p50 of the scale bench")
	scaleWorkers   = flag.Int("scale-workers", 1, "chains built at once by the scale bench; 1 by default: with 2, a dm create once failed to find its /dev/mapper node on a loaded machine")
	scaleEmpty     = flag.String("scale-empty-socket", "", "compare phase: socket of a thinsnapd on an empty pool")
	scaleExecNs    = flag.Int64("scale-exec-ns", 0, "restart phases: wall-clock time (Unix ns) at which thinsnapd was started")
)

const scalePrefix = "scale/"

type layout struct {
	total, chains, active int
}

func newLayout() layout {
	n, active := *scaleSnapshots, *scaleSnapshots**scaleActivePct/100
	committed := n - active
	if *scaleChain <= 0 || committed <= 0 || committed%*scaleChain != 0 || n**scaleActivePct%100 != 0 {
		fatalf("-scale-snapshots %d with %d%% active does not split into chains of %d committed snapshots",
			n, *scaleActivePct, *scaleChain)
	}
	return layout{total: n, chains: committed / *scaleChain, active: active}
}

func committedKey(chain, level int) string {
	return fmt.Sprintf("%sc%04d/l%02d", scalePrefix, chain, level)
}
func activeKey(i int) string { return fmt.Sprintf("%sactive-%04d", scalePrefix, i) }

// activeParent is the chain tip that active snapshot i sits on.
func (l layout) activeParent(i int) string { return committedKey(i%l.chains, *scaleChain-1) }

// runScale dials `socket` itself: after a restart it must first poll for the
// daemon, which a blocking dial (with gRPC's reconnect backoff of a second
// and more) would measure only coarsely.
func runScale(ctx context.Context, socket string) {
	l := newLayout()
	b := &bench{ctx: ctx, run: scalePrefix + "probe"}
	switch *scalePhase {
	case "build":
		sn, conn := dial(socket)
		defer conn.Close()
		b.sn = sn
		scaleBuild(b, l)
	case "restart", "restart-remove":
		scaleAfterRestart(b, l, socket)
	case "compare":
		scaleCompare(ctx, l, socket)
	case "list":
		sn, conn := dial(socket)
		defer conn.Close()
		b.sn = sn
		if _, all, _ := counts(b); all == 0 {
			scaleBuildUntimed(b, l)
		}
		scaleList(b, l)
	default:
		fatalf("unknown -scale-phase %q", *scalePhase)
	}
}

// counts walks every snapshot: how many of the scale bench's there are by
// kind, and how long the Walk took.
func counts(b *bench) (map[snapshots.Kind]int, int, time.Duration) {
	byKind := map[snapshots.Kind]int{}
	all := 0
	t0 := time.Now()
	b.must(b.sn.Walk(b.ctx, func(_ context.Context, info snapshots.Info) error {
		all++
		if strings.HasPrefix(info.Name, scalePrefix) {
			byKind[info.Kind]++
		}
		return nil
	}), "walk", "")
	return byKind, all, time.Since(t0)
}

func expectCounts(b *bench, committed, active int) {
	got, _, _ := counts(b)
	if got[snapshots.KindCommitted] != committed || got[snapshots.KindActive] != active || len(got) > 2 {
		fatalf("expected %d committed and %d active scale snapshots, found %v", committed, active, got)
	}
}

func cleanup(b *bench) {
	c, ok := b.sn.(snapshots.Cleaner)
	if !ok {
		fatalf("the proxy snapshotter has no Cleanup")
	}
	b.must(c.Cleanup(b.ctx), "cleanup", "")
}

// preparep50 times single Prepares of `parent` (after a few untimed ones),
// keeping them all until the end, then removes them and waits for their
// devices to go (Cleanup), so that no reclaim runs during the timed calls.
func preparep50(b *bench, parent string) time.Duration {
	var keys []string
	var took []time.Duration
	for i := 0; i < *warmup+*scaleSamples; i++ {
		key := b.key("prepare")
		t0 := time.Now()
		_, err := b.sn.Prepare(b.ctx, key, parent)
		d := time.Since(t0)
		b.must(err, "prepare", key)
		keys = append(keys, key)
		if i >= *warmup {
			took = append(took, d)
		}
	}
	for _, k := range keys {
		b.must(b.sn.Remove(b.ctx, k), "remove", k)
	}
	cleanup(b)
	return newStats(took).pct(50)
}

// progress collects the build's latencies and prints them in slices of a
// tenth of the snapshots, so that a cost growing with the pool shows.
type progress struct {
	mu                   sync.Mutex
	start, sliceT0       time.Time
	done, every          int
	prepare, commit      []time.Duration
	slicePrep, sliceComm []time.Duration
}

func (p *progress) add(prepare, commit time.Duration, hasCommit bool, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.prepare, p.slicePrep = append(p.prepare, prepare), append(p.slicePrep, prepare)
	if hasCommit {
		p.commit, p.sliceComm = append(p.commit, commit), append(p.sliceComm, commit)
	}
	if p.done%p.every != 0 && p.done != total {
		return
	}
	now := time.Now()
	commitP50 := "          -" // the active snapshots are not committed
	if len(p.sliceComm) > 0 {
		commitP50 = ms(newStats(p.sliceComm).pct(50))
	}
	fmt.Printf("%-9s built %5d/%d  last %d: Prepare p50 %s p90 %s  Commit p50 %s  %.1f snapshots/s  (%.0f s in all)\n",
		*label, p.done, total, len(p.slicePrep), ms(newStats(p.slicePrep).pct(50)),
		ms(newStats(p.slicePrep).pct(90)), commitP50,
		float64(len(p.slicePrep))/now.Sub(p.sliceT0).Seconds(), now.Sub(p.start).Seconds())
	p.slicePrep, p.sliceComm, p.sliceT0 = nil, nil, now
}

func scaleBuild(b *bench, l layout) {
	if _, all, _ := counts(b); all != 0 {
		fatalf("the scale bench wants an empty snapshotter; it holds %d snapshots", all)
	}
	fmt.Printf("%-9s == scale: %d snapshots = %d chains of %d committed + %d active on the chain tips ==\n",
		*label, l.total, l.chains, *scaleChain, l.active)

	// On the empty pool: root Prepares, and Prepares of one committed layer.
	layerActive, layer := scalePrefix+"probe-layer-active", scalePrefix+"probe-layer"
	_, err := b.sn.Prepare(b.ctx, layerActive, "")
	b.must(err, "prepare", layerActive)
	b.must(b.sn.Commit(b.ctx, layer, layerActive), "commit", layerActive)
	emptyRoot := preparep50(b, "")
	emptyChild := preparep50(b, layer)
	b.must(b.sn.Remove(b.ctx, layer), "remove", layer)
	cleanup(b)
	fmt.Printf("%-9s empty pool: Prepare p50 root %s  child %s  (%d samples each)\n",
		*label, ms(emptyRoot), ms(emptyChild), *scaleSamples)

	p := &progress{start: time.Now(), sliceT0: time.Now(), every: (l.total + 9) / 10}
	chains := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < *scaleWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chains {
				parent := ""
				for level := 0; level < *scaleChain; level++ {
					name := committedKey(c, level)
					key := name + "-active"
					t0 := time.Now()
					_, err := b.sn.Prepare(b.ctx, key, parent)
					t1 := time.Now()
					b.must(err, "prepare", key)
					b.must(b.sn.Commit(b.ctx, name, key), "commit", key)
					p.add(t1.Sub(t0), time.Since(t1), true, l.total)
					parent = name
				}
			}
		}()
	}
	for c := 0; c < l.chains; c++ {
		chains <- c
	}
	close(chains)
	wg.Wait()
	// The active ones last, so that each tip exists; one worker is enough.
	for i := 0; i < l.active; i++ {
		key := activeKey(i)
		t0 := time.Now()
		_, err := b.sn.Prepare(b.ctx, key, l.activeParent(i))
		b.must(err, "prepare", key)
		p.add(time.Since(t0), 0, false, l.total)
	}
	built := time.Since(p.start)
	fmt.Printf("%-9s built %d snapshots in %.0f s (%d workers): Prepare p50 %s  Commit p50 %s\n",
		*label, l.total, built.Seconds(), *scaleWorkers, ms(newStats(p.prepare).pct(50)),
		ms(newStats(p.commit).pct(50)))
	expectCounts(b, l.total-l.active, l.active)

	fullRoot := preparep50(b, "")
	fullChild := preparep50(b, committedKey(0, *scaleChain-1))
	fmt.Printf("%-9s at %d snapshots: Prepare p50 root %s  child %s  (%d samples each)\n",
		*label, l.total, ms(fullRoot), ms(fullChild), *scaleSamples)
	fmt.Printf("%-9s Prepare p50 at %d vs empty: root %.2fx, child %.2fx (target: within 1.2x)\n",
		*label, l.total, float64(fullRoot)/float64(emptyRoot), float64(fullChild)/float64(emptyChild))
}

// waitServing polls until thinsnapd serves a Stat of one of the built
// snapshots and returns that moment.
func waitServing(b *bench, socket string) time.Time {
	key := committedKey(0, 0)
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		// A bare connect first: cheap, and no gRPC reconnect backoff to wait out.
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			sn, conn := dial(socket)
			_, err := sn.Stat(b.ctx, key)
			conn.Close()
			if err == nil {
				return time.Now()
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	fatalf("thinsnapd did not serve a Stat of %s on %s within 5 minutes", key, socket)
	return time.Time{}
}

func scaleAfterRestart(b *bench, l layout, socket string) {
	if *scaleExecNs == 0 {
		fatalf("-scale-phase %s needs -scale-exec-ns", *scalePhase)
	}
	exec := time.Unix(0, *scaleExecNs)
	polling := time.Since(exec)
	served := waitServing(b, socket)
	fmt.Printf("%-9s start-up at %d snapshots: exec to a served Stat %s (target: < 2000 ms; polled from %s after exec, every 2 ms)\n",
		*label, l.total, ms(served.Sub(exec)), ms(polling))

	sn, conn := dial(socket)
	defer conn.Close()
	b.sn = sn
	scaleList(b, l)
	if *scalePhase != "restart-remove" {
		return
	}

	// Tips first: the active snapshots, then the chains level by level from the top.
	t0 := time.Now()
	for i := 0; i < l.active; i++ {
		b.must(b.sn.Remove(b.ctx, activeKey(i)), "remove", activeKey(i))
	}
	for level := *scaleChain - 1; level >= 0; level-- {
		for c := 0; c < l.chains; c++ {
			b.must(b.sn.Remove(b.ctx, committedKey(c, level)), "remove", committedKey(c, level))
		}
	}
	removed := time.Since(t0)
	cleanup(b)
	all := time.Since(t0)
	expectCounts(b, 0, 0)
	fmt.Printf("%-9s removed all %d: Removes %.1f s, then Cleanup %.1f s: %.1f s in all, %.1f snapshots/s\n",
		*label, l.total, removed.Seconds(), (all - removed).Seconds(), all.Seconds(),
		float64(l.total)/all.Seconds())
}

// scaleList times -scale-lists Walks of all the snapshots, which must be
// exactly the layout's.
func scaleList(b *bench, l layout) {
	var walks []time.Duration
	for i := 0; i < *scaleLists || i == 0; i++ {
		got, all, took := counts(b)
		if got[snapshots.KindCommitted] != l.total-l.active || got[snapshots.KindActive] != l.active || all != l.total {
			fatalf("expected %d committed and %d active snapshots, found %v of %d", l.total-l.active, l.active, got, all)
		}
		walks = append(walks, took)
	}
	target := "target: < 200 ms"
	if *scalePhase == "list" {
		target = "the VM's target: < 200 ms; this is the fake pool on the host"
	}
	fmt.Printf("%-9s List (Walk) of all %d: first %s, median of %d %s (%s)\n",
		*label, l.total, ms(walks[0]), len(walks), ms(newStats(walks).pct(50)), target)
}

// scaleBuildUntimed builds the layout as scaleBuild does, one call at a time,
// without its figures.
func scaleBuildUntimed(b *bench, l layout) {
	for c := 0; c < l.chains; c++ {
		parent := ""
		for level := 0; level < *scaleChain; level++ {
			name := committedKey(c, level)
			_, err := b.sn.Prepare(b.ctx, name+"-active", parent)
			b.must(err, "prepare", name+"-active")
			b.must(b.sn.Commit(b.ctx, name, name+"-active"), "commit", name+"-active")
			parent = name
		}
	}
	for i := 0; i < l.active; i++ {
		_, err := b.sn.Prepare(b.ctx, activeKey(i), l.activeParent(i))
		b.must(err, "prepare", activeKey(i))
	}
}

// scaleCompare alternates single root Prepares between the full pool and an
// empty one (full, empty, then empty, full, ...), keeping them all until the
// end like preparep50, and prints both p50s and their ratio.
func scaleCompare(ctx context.Context, l layout, socket string) {
	if *scaleEmpty == "" {
		fatalf("-scale-phase compare needs -scale-empty-socket")
	}
	var benches [2]*bench
	for i, sock := range []string{socket, *scaleEmpty} {
		sn, conn := dial(sock)
		defer conn.Close()
		benches[i] = &bench{sn: sn, ctx: ctx, run: scalePrefix + "compare"}
	}
	var keys [2][]string
	var took [2][]time.Duration
	for i := 0; i < *warmup+*scaleSamples; i++ {
		for j := 0; j < 2; j++ {
			which := (i + j) % 2
			b := benches[which]
			key := b.key("prepare")
			t0 := time.Now()
			_, err := b.sn.Prepare(ctx, key, "")
			d := time.Since(t0)
			b.must(err, "prepare", key)
			keys[which] = append(keys[which], key)
			if i >= *warmup {
				took[which] = append(took[which], d)
			}
		}
	}
	for i, b := range benches {
		for _, k := range keys[i] {
			b.must(b.sn.Remove(ctx, k), "remove", k)
		}
		cleanup(b)
	}
	full, empty := newStats(took[0]).pct(50), newStats(took[1]).pct(50)
	fmt.Printf("%-9s Prepare p50 (root), interleaved, %d samples each: at %d snapshots %s, empty pool %s: %.2fx (target: within 1.2x)\n",
		*label, *scaleSamples, l.total, ms(full), ms(empty), float64(full)/float64(empty))
}
