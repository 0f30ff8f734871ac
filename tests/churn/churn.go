// churn mode: many clients using snapshots the way containerd does while
// containers come and go, with the reclaim backlog and the pool's data in use
// sampled every second (issue 15, item 3).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
)

type churnConfig struct {
	socket, metricsURL, pool, mountRoot string
	clients, images, layers, writeMiB   int
	duration, callTimeout               time.Duration
	cleanupTimeout, cleanupLimit        time.Duration
	backlogTarget, dataTargetMiB        int
	assertTargets                       bool
}

// image is one chain of committed layers; marker, in every layer of the chain
// from the tip down, holds the text the tip's layer wrote there.
type image struct {
	layers []string // committed names, base first
	marker string   // file the tip's layer wrote
	text   string   // and what it holds
}

func (im image) tip() string { return im.layers[len(im.layers)-1] }

// buildImages commits `cfg.images` chains of `cfg.layers` layers each: every
// layer is prepared, mounted, given a few files, unmounted and committed.
func buildImages(sn snapshots.Snapshotter, cfg churnConfig, run string) []image {
	dir := filepath.Join(cfg.mountRoot, "image")
	var out []image
	for i := 0; i < cfg.images; i++ {
		var im image
		parent := ""
		for l := 0; l < cfg.layers; l++ {
			key := fmt.Sprintf("%s/img%d-l%d-active", run, i, l)
			name := fmt.Sprintf("%s/img%d-l%d", run, i, l)
			ctx, cancel := namespaced(cfg.callTimeout)
			mounts, err := sn.Prepare(ctx, key, parent)
			if err != nil {
				fatalf("prepare %s: %v", key, err)
			}
			if err := mountAt(mounts, dir); err != nil {
				fatalf("image layer %s: %v", key, err)
			}
			im.marker = fmt.Sprintf("layers/img%d.txt", i)
			im.text = fmt.Sprintf("image %d layer %d of run %s\n", i, l, run)
			files := map[string][]byte{
				im.marker:                        []byte(im.text),
				fmt.Sprintf("layers/l%d.bin", l): bytes.Repeat([]byte{byte(l + 1)}, 256<<10),
				fmt.Sprintf("etc/conf-%d", l):    []byte(name + "\n"),
			}
			for rel, data := range files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
					fatalf("image layer %s: %v", key, err)
				}
				if err := writeSynced(filepath.Join(dir, rel), data); err != nil {
					fatalf("image layer %s: write %s: %v", key, rel, err)
				}
			}
			if err := unmount(dir); err != nil {
				fatalf("image layer %s: %v", key, err)
			}
			if err := sn.Commit(ctx, name, key); err != nil {
				fatalf("commit %s: %v", key, err)
			}
			cancel()
			im.layers = append(im.layers, name)
			parent = name
		}
		out = append(out, im)
	}
	return out
}

// sample is one reading of the daemon's reclaim backlog and the pool's data in use.
type sample struct {
	at          time.Time
	backlog     int
	dataUsedMiB float64
}

// sampler reads both every second until stopped.
type sampler struct {
	cfg        churnConfig
	blockBytes uint64
	http       *http.Client

	mu      sync.Mutex
	samples []sample
	errs    []string
	stop    chan struct{}
	done    chan struct{}
}

// backlog reads thinsnap_pending_delete_intents from the daemon's /metrics.
func (s *sampler) backlog() (int, error) {
	resp, err := s.http.Get(s.cfg.metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", s.cfg.metricsURL, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "thinsnap_pending_delete_intents" {
			v, err := strconv.ParseFloat(f[1], 64)
			return int(v), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no thinsnap_pending_delete_intents", s.cfg.metricsURL)
}

// dmsetup runs `dmsetup <what> <pool>` and returns the fields of its single line.
func dmsetupFields(what, pool string) ([]string, error) {
	out, err := exec.Command("dmsetup", what, pool).Output()
	if err != nil {
		return nil, fmt.Errorf("dmsetup %s %s: %v", what, pool, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 6 || f[2] != "thin-pool" {
		return nil, fmt.Errorf("dmsetup %s %s: not a thin-pool line: %q", what, pool, out)
	}
	return f, nil
}

// dataUsed reads the pool's used data blocks (`dmsetup status`: <used>/<total>).
func (s *sampler) dataUsedMiB() (float64, error) {
	f, err := dmsetupFields("status", s.cfg.pool)
	if err != nil {
		return 0, err
	}
	used, _, ok := strings.Cut(f[5], "/")
	n, perr := strconv.ParseUint(used, 10, 64)
	if !ok || perr != nil {
		return 0, fmt.Errorf("dmsetup status %s: bad data field %q", s.cfg.pool, f[5])
	}
	return float64(n*s.blockBytes) / (1 << 20), nil
}

func (s *sampler) read() {
	b, err := s.backlog()
	d, derr := s.dataUsedMiB()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range []error{err, derr} {
		if e != nil && len(s.errs) < 10 {
			s.errs = append(s.errs, e.Error())
		}
	}
	if err == nil && derr == nil {
		s.samples = append(s.samples, sample{time.Now(), b, d})
	}
}

func newSampler(cfg churnConfig) *sampler {
	table, err := dmsetupFields("table", cfg.pool)
	if err != nil {
		fatalf("%v", err)
	}
	sectors, err := strconv.ParseUint(table[5], 10, 64)
	if err != nil {
		fatalf("dmsetup table %s: bad block size %q", cfg.pool, table[5])
	}
	s := &sampler{cfg: cfg, blockBytes: sectors * 512, http: &http.Client{Timeout: 5 * time.Second},
		stop: make(chan struct{}), done: make(chan struct{})}
	// The first reading must work: a test that cannot sample fails here, loudly.
	if _, err := s.backlog(); err != nil {
		fatalf("reclaim backlog unreadable: %v", err)
	}
	if _, err := s.dataUsedMiB(); err != nil {
		fatalf("pool data in use unreadable: %v", err)
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			s.read()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) finish() {
	close(s.stop)
	<-s.done
}

// peak returns the highest backlog and data in use sampled in [from, to).
func (s *sampler) peak(from, to time.Time) (backlog int, dataMiB float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.samples {
		if x.at.Before(from) || !x.at.Before(to) {
			continue
		}
		if x.backlog > backlog {
			backlog = x.backlog
		}
		if x.dataUsedMiB > dataMiB {
			dataMiB = x.dataUsedMiB
		}
	}
	return
}

// latest is the newest sample, or a zero one.
func (s *sampler) latest() sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return sample{}
	}
	return s.samples[len(s.samples)-1]
}

// churner is one client: its own connection, keys, mount point and figures.
type churner struct {
	id       int
	cfg      churnConfig
	run      string
	sn       snapshots.Snapshotter
	images   []image
	dir      string
	buf      []byte
	loops    int
	removed  int // successful Removes: devices handed to the reclaim
	prepares []time.Duration
	err      error
	loopsAll *int64
	mu       *sync.Mutex
}

// call runs one snapshot call with its own deadline.
func (c *churner) call(f func(ctx context.Context) error) error {
	ctx, cancel := namespaced(c.cfg.callTimeout)
	defer cancel()
	return f(ctx)
}

// inMount mounts m on c.dir, checks the image's marker, runs body and unmounts.
func (c *churner) inMount(m []mount.Mount, im image, body func() error) error {
	if err := mountAt(m, c.dir); err != nil {
		return err
	}
	got, err := os.ReadFile(filepath.Join(c.dir, im.marker))
	if err == nil && string(got) != im.text {
		err = fmt.Errorf("%s holds %q, want %q", im.marker, got, im.text)
	}
	if err == nil {
		err = body()
	}
	if uerr := unmount(c.dir); err == nil {
		err = uerr
	}
	return err
}

// loop is one container's life: Prepare on an image's tip, mount, write and
// fsync, unmount; every 4th a View of the tip read and removed; every 5th the
// container committed and the commit removed, else the container removed.
func (c *churner) loop(n int) error {
	im := c.images[(c.id+n)%len(c.images)]
	key := fmt.Sprintf("%s/c%d-%d", c.run, c.id, n)
	var m []mount.Mount
	t0 := time.Now()
	err := c.call(func(ctx context.Context) (err error) {
		m, err = c.sn.Prepare(ctx, key, im.tip())
		return err
	})
	if err != nil {
		return fmt.Errorf("prepare %s on %s: %w", key, im.tip(), err)
	}
	c.prepares = append(c.prepares, time.Since(t0))
	err = c.inMount(m, im, func() error {
		return writeSynced(filepath.Join(c.dir, fmt.Sprintf("data-%d.bin", n)), c.buf)
	})
	if err != nil {
		return fmt.Errorf("container %s: %w", key, err)
	}
	if n%4 == 0 {
		view := key + "-view"
		err := c.call(func(ctx context.Context) (err error) {
			m, err = c.sn.View(ctx, view, im.tip())
			return err
		})
		if err != nil {
			return fmt.Errorf("view %s of %s: %w", view, im.tip(), err)
		}
		if err := c.inMount(m, im, func() error { return nil }); err != nil {
			return fmt.Errorf("view %s: %w", view, err)
		}
		if err := c.call(func(ctx context.Context) error { return c.sn.Remove(ctx, view) }); err != nil {
			return fmt.Errorf("remove view %s: %w", view, err)
		}
		c.removed++
	}
	gone := key
	if n%5 == 0 {
		gone = key + "-committed"
		if err := c.call(func(ctx context.Context) error { return c.sn.Commit(ctx, gone, key) }); err != nil {
			return fmt.Errorf("commit %s: %w", key, err)
		}
	}
	if err := c.call(func(ctx context.Context) error { return c.sn.Remove(ctx, gone) }); err != nil {
		return fmt.Errorf("remove %s: %w", gone, err)
	}
	c.removed++
	return nil
}

func (c *churner) runUntil(until time.Time) {
	for n := 1; time.Now().Before(until); n++ {
		if err := c.loop(n); err != nil {
			c.err = err
			_ = unmount(c.dir) // best effort; the snapshot is left for the teardown
			return
		}
		c.loops++
		c.mu.Lock()
		*c.loopsAll++
		c.mu.Unlock()
	}
}

// removeLeftovers removes, best effort, whatever of this run is still there
// but the names `keep` accepts (a failed client's snapshots, not the images),
// children before parents; returns the count.
func removeLeftovers(sn snapshots.Snapshotter, run string, keep func(string) bool) int {
	removed := 0
	for pass := 0; pass < 8; pass++ {
		var left []string
		ctx, cancel := namespaced(time.Minute)
		_ = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if strings.HasPrefix(info.Name, run+"/") && !keep(info.Name) {
				left = append(left, info.Name)
			}
			return nil
		})
		if len(left) == 0 {
			cancel()
			return removed
		}
		for _, k := range left {
			if sn.Remove(ctx, k) == nil {
				removed++
			}
		}
		cancel()
	}
	return removed
}

func runChurn(args []string) {
	fs := flag.NewFlagSet("churn", flag.ExitOnError)
	var cfg churnConfig
	fs.StringVar(&cfg.socket, "socket", "", "thinsnapd's unix socket")
	fs.StringVar(&cfg.metricsURL, "metrics", "", "thinsnapd's /metrics URL (reclaim backlog)")
	fs.StringVar(&cfg.pool, "pool", "", "device-mapper name of the pool (data in use)")
	fs.StringVar(&cfg.mountRoot, "mount-dir", "", "directory for the mount points")
	fs.IntVar(&cfg.clients, "clients", 16, "concurrent clients")
	fs.DurationVar(&cfg.duration, "duration", 60*time.Second, "how long the clients loop")
	fs.IntVar(&cfg.images, "images", 3, "image chains")
	fs.IntVar(&cfg.layers, "layers", 5, "committed layers per image")
	fs.IntVar(&cfg.writeMiB, "write-mib", 4, "MiB each container writes (and fsyncs)")
	fs.DurationVar(&cfg.callTimeout, "call-timeout", 2*time.Minute, "deadline of each snapshot call")
	fs.DurationVar(&cfg.cleanupTimeout, "cleanup-timeout", 4*time.Minute, "deadline of the final Cleanup call")
	fs.DurationVar(&cfg.cleanupLimit, "cleanup-limit", 30*time.Second, "the final Cleanup fails the test when slower")
	fs.IntVar(&cfg.backlogTarget, "backlog-target", 64, "target (printed, not judged): peak reclaim backlog")
	fs.IntVar(&cfg.dataTargetMiB, "data-target-mib", 512, "target (printed, not judged): peak pool data in use")
	fs.BoolVar(&cfg.assertTargets, "assert-targets", false, "fail when a target is missed, too")
	_ = fs.Parse(args)
	if cfg.socket == "" || cfg.metricsURL == "" || cfg.pool == "" || cfg.mountRoot == "" {
		fatalf("churn: -socket, -metrics, -pool and -mount-dir are required")
	}
	if cfg.clients < 1 || cfg.images < 1 || cfg.layers < 1 || cfg.duration <= 0 {
		fatalf("churn: -clients, -images, -layers and -duration must be positive")
	}
	run := fmt.Sprintf("churn-%d", os.Getpid())
	sn, conn := dial(cfg.socket)
	defer conn.Close()

	smp := newSampler(cfg)
	t0 := time.Now()
	images := buildImages(sn, cfg, run)
	logf("built %d images of %d layers in %.1f s; pool data in use %.1f MiB", cfg.images, cfg.layers,
		time.Since(t0).Seconds(), smp.latest().dataUsedMiB)

	var loopsAll int64
	var mu sync.Mutex
	clients := make([]*churner, cfg.clients)
	for i := range clients {
		csn, cconn := dial(cfg.socket)
		defer cconn.Close()
		buf := make([]byte, cfg.writeMiB<<20)
		rand.New(rand.NewSource(int64(i))).Read(buf)
		clients[i] = &churner{id: i, cfg: cfg, run: run, sn: csn, images: images, buf: buf,
			dir: filepath.Join(cfg.mountRoot, fmt.Sprintf("c%d", i)), loopsAll: &loopsAll, mu: &mu}
	}
	logf("churn: %d clients for %s", cfg.clients, cfg.duration)
	churnStart := time.Now()
	until := churnStart.Add(cfg.duration)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func(c *churner) {
			defer wg.Done()
			c.runUntil(until)
		}(c)
	}
	// A line every 5 s while the clients run.
	progressDone := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				s := smp.latest()
				mu.Lock()
				n := loopsAll
				mu.Unlock()
				logf("t=%3.0fs loops %5d  backlog %4d  pool data in use %7.1f MiB", time.Since(churnStart).Seconds(),
					n, s.backlog, s.dataUsedMiB)
			}
		}
	}()
	wg.Wait()
	close(progressDone)
	churnEnd := time.Now()

	loops, removedChurn := 0, 0
	var prepares []time.Duration
	var clientErrs []string
	for _, c := range clients {
		loops += c.loops
		removedChurn += c.removed
		prepares = append(prepares, c.prepares...)
		if c.err != nil {
			clientErrs = append(clientErrs, fmt.Sprintf("client %d after %d loops: %v", c.id, c.loops, c.err))
		}
	}
	backlogChurnEnd := smp.latest().backlog
	logf("churn done: %d loops in %.1f s, %d errors, backlog %d", loops, churnEnd.Sub(churnStart).Seconds(),
		len(clientErrs), backlogChurnEnd)

	// Teardown: a failed client's leftovers, then the images, tips first; then one Cleanup.
	isImage := func(name string) bool { return strings.HasPrefix(name, run+"/img") }
	removedTeardown := removeLeftovers(sn, run, isImage)
	for _, im := range images {
		for l := len(im.layers) - 1; l >= 0; l-- {
			ctx, cancel := namespaced(cfg.callTimeout)
			err := sn.Remove(ctx, im.layers[l])
			cancel()
			if err != nil {
				clientErrs = append(clientErrs, fmt.Sprintf("remove image layer %s: %v", im.layers[l], err))
				continue
			}
			removedTeardown++
		}
	}
	backlogCleanupStart, err := smp.backlog()
	if err != nil {
		fatalf("reclaim backlog before Cleanup: %v", err)
	}
	logf("Cleanup: %d removed devices pending (the gauge may lag by up to 1 s)", backlogCleanupStart)
	cleanupStart := time.Now()
	ctx, cancel := namespaced(cfg.cleanupTimeout)
	cleanupErr := sn.(snapshots.Cleaner).Cleanup(ctx)
	cancel()
	cleanupEnd := time.Now()
	cleanupSec := cleanupEnd.Sub(cleanupStart).Seconds()
	time.Sleep(1100 * time.Millisecond) // the daemon refreshes its readings once a second
	backlogAfter, berr := smp.backlog()
	smp.finish()
	peakBacklog, peakData := smp.peak(churnStart, churnEnd)
	peakBacklogAll, peakDataAll := smp.peak(t0, cleanupEnd.Add(time.Second))

	removedAll := removedChurn + removedTeardown
	churnSec := churnEnd.Sub(churnStart).Seconds()
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Printf("== churn figures (%d clients, %.0f s, %d MiB written per container, %d images x %d layers) ==\n",
		cfg.clients, churnSec, cfg.writeMiB, cfg.images, cfg.layers)
	fmt.Printf("loops                        %d (%.1f/s)\n", loops, float64(loops)/churnSec)
	fmt.Printf("errors                       %d\n", len(clientErrs))
	fmt.Printf("removed devices              %d during the churn (%.1f/s), %d at teardown\n",
		removedChurn, float64(removedChurn)/churnSec, removedTeardown)
	fmt.Printf("peak backlog                 %d removed devices during the churn (%d incl. teardown)   target <= %d: %s\n",
		peakBacklog, peakBacklogAll, cfg.backlogTarget, verdict(peakBacklog <= cfg.backlogTarget))
	fmt.Printf("peak pool data in use        %.1f MiB during the churn (%.1f incl. teardown)   target <= %d MiB: %s\n",
		peakData, peakDataAll, cfg.dataTargetMiB, verdict(peakData <= float64(cfg.dataTargetMiB)))
	fmt.Printf("backlog                      %d at the churn's end, %d when Cleanup began, %d after it\n",
		backlogChurnEnd, backlogCleanupStart, backlogAfter)
	fmt.Printf("reclaim rate during churn    %.1f devices/s ((removed - backlog at end) / churn time)\n",
		float64(removedChurn-backlogChurnEnd)/churnSec)
	fmt.Printf("drain rate in final Cleanup  %.1f devices/s (%d pending / %.2f s)\n",
		float64(backlogCleanupStart)/cleanupSec, backlogCleanupStart, cleanupSec)
	fmt.Printf("drain rate overall           %.1f devices/s (%d removed / %.1f s from the churn's start to Cleanup's end)\n",
		float64(removedAll)/cleanupEnd.Sub(churnStart).Seconds(), removedAll, cleanupEnd.Sub(churnStart).Seconds())
	fmt.Printf("Prepare                      p50 %s  p99 %s  max %s  (n=%d)\n", ms(pct(prepares, 50)),
		ms(pct(prepares, 99)), ms(pct(prepares, 100)), len(prepares))
	fmt.Printf("Cleanup                      %.2f s   limit %s: %s\n", cleanupSec, cfg.cleanupLimit,
		verdict(cleanupEnd.Sub(cleanupStart) <= cfg.cleanupLimit && cleanupErr == nil))

	var problems []string
	problems = append(problems, clientErrs...)
	smp.mu.Lock()
	for _, e := range smp.errs {
		problems = append(problems, "sampling: "+e)
	}
	smp.mu.Unlock()
	if cfg.assertTargets && peakBacklog > cfg.backlogTarget {
		problems = append(problems, fmt.Sprintf("peak backlog %d over the target %d", peakBacklog, cfg.backlogTarget))
	}
	if cfg.assertTargets && peakData > float64(cfg.dataTargetMiB) {
		problems = append(problems, fmt.Sprintf("peak pool data in use %.1f MiB over the target %d MiB", peakData,
			cfg.dataTargetMiB))
	}
	if cleanupErr != nil {
		problems = append(problems, fmt.Sprintf("Cleanup returned an error after %.1f s: %v", cleanupSec, cleanupErr))
	} else if cleanupEnd.Sub(cleanupStart) > cfg.cleanupLimit {
		problems = append(problems, fmt.Sprintf("Cleanup took %.1f s, over the %s limit", cleanupSec, cfg.cleanupLimit))
	}
	switch {
	case berr != nil:
		problems = append(problems, fmt.Sprintf("reclaim backlog after Cleanup: %v", berr))
	case backlogAfter != 0:
		problems = append(problems, fmt.Sprintf("%d removed devices still pending after Cleanup returned", backlogAfter))
	}
	if left := removeLeftovers(sn, run, func(string) bool { return false }); left > 0 {
		problems = append(problems, fmt.Sprintf("%d snapshots of this run were still there at the end", left))
	}
	if len(problems) > 0 {
		for i, p := range problems {
			if i == 20 {
				fmt.Printf("... and %d more\n", len(problems)-i)
				break
			}
			fmt.Println("problem:", p)
		}
		fatalf("churn: %v", errors.New(problems[0]))
	}
	fmt.Println("churn: all operations succeeded")
}
