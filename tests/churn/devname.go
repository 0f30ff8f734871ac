// devname mode (issue 15, item 6): a removed snapshot's device path never
// comes back as another snapshot's mount source, and Remove racing Commit on
// one key ends in exactly one consistent outcome.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
)

type devnameTest struct {
	sn       snapshots.Snapshotter
	run      string
	timeout  time.Duration
	problems []string
}

func (t *devnameTest) problem(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	fmt.Println("problem:", msg)
	t.problems = append(t.problems, msg)
}

// do runs one call with its own deadline.
func (t *devnameTest) do(f func(ctx context.Context) error) error {
	ctx, cancel := namespaced(t.timeout)
	defer cancel()
	return f(ctx)
}

func (t *devnameTest) must(err error, what string) {
	if err != nil {
		fatalf("devname: %s: %v", what, err)
	}
}

func (t *devnameTest) cleanup(what string) {
	t0 := time.Now()
	err := t.do(func(ctx context.Context) error { return t.sn.(snapshots.Cleaner).Cleanup(ctx) })
	t.must(err, "Cleanup "+what)
	logf("Cleanup (%s) took %.2f s", what, time.Since(t0).Seconds())
}

// source is the single mount source of key, through Mounts.
func (t *devnameTest) source(key string) string {
	var m []mount.Mount
	t.must(t.do(func(ctx context.Context) (err error) {
		m, err = t.sn.Mounts(ctx, key)
		return err
	}), "mounts "+key)
	if len(m) != 1 {
		fatalf("devname: mounts %s: want one mount, got %+v", key, m)
	}
	return m[0].Source
}

func rdev(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Rdev, nil
}

func majMin(dev uint64) string {
	return fmt.Sprintf("%d:%d", (dev>>8)&0xfff|(dev>>32)&^0xfff, dev&0xff|(dev>>12)&^0xff)
}

// mapperNodes maps every /dev/mapper node but control to its device number.
func mapperNodes() map[string]uint64 {
	entries, err := os.ReadDir("/dev/mapper")
	if err != nil {
		fatalf("devname: read /dev/mapper: %v", err)
	}
	nodes := map[string]uint64{}
	for _, e := range entries {
		if e.Name() == "control" {
			continue
		}
		p := filepath.Join("/dev/mapper", e.Name())
		if d, err := rdev(p); err == nil {
			nodes[p] = d
		}
	}
	return nodes
}

// removedPaths: snapshots are prepared, their Mounts answers kept, removed and
// cleaned up; then `many` more are prepared and none of them, nor any device
// node, may be one of the removed ones' paths.
func (t *devnameTest) removedPaths(removed, many int, parent string) {
	type gone struct {
		key, source string
		dev         uint64
	}
	var olds []gone
	for i := 0; i < removed; i++ {
		key := fmt.Sprintf("%s/a%d", t.run, i)
		t.must(t.do(func(ctx context.Context) error {
			_, err := t.sn.Prepare(ctx, key, parent)
			return err
		}), "prepare "+key)
		src := t.source(key)
		d, err := rdev(src)
		t.must(err, "stat "+src)
		olds = append(olds, gone{key, src, d})
	}
	for _, o := range olds {
		t.must(t.do(func(ctx context.Context) error { return t.sn.Remove(ctx, o.key) }), "remove "+o.key)
		logf("removed %s; its Mounts source was %s (device %s)", o.key, o.source, majMin(o.dev))
	}
	t.cleanup("after the removals")
	live := map[string]string{} // source -> key
	for i := 0; i < many; i++ {
		key := fmt.Sprintf("%s/n%d", t.run, i)
		p := parent
		if i%2 == 1 {
			p = ""
		}
		t.must(t.do(func(ctx context.Context) error {
			_, err := t.sn.Prepare(ctx, key, p)
			return err
		}), "prepare "+key)
	}
	// Every live snapshot's Mounts source, through Walk: not only this run's.
	var keys []string
	t.must(t.do(func(ctx context.Context) error {
		return t.sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if info.Kind != snapshots.KindCommitted {
				keys = append(keys, info.Name)
			}
			return nil
		})
	}), "walk")
	for _, k := range keys {
		src := t.source(k)
		if other, dup := live[src]; dup {
			t.problem("%s and %s have the same mount source %s", other, k, src)
		}
		live[src] = k
	}
	nodes := mapperNodes()
	logf("%d live active snapshots after %d Prepares, %d /dev/mapper nodes", len(live), many, len(nodes))
	for _, o := range olds {
		if k, ok := live[o.source]; ok {
			t.problem("removed %s's mount source %s is now the mount source of live snapshot %s",
				o.key, o.source, k)
		}
		if d, err := rdev(o.source); err == nil {
			t.problem("removed %s's mount source %s exists again (device %s)", o.key, o.source, majMin(d))
			for src, k := range live {
				if sd, err := rdev(src); err == nil && sd == d {
					t.problem("removed %s's mount source %s reaches %s's device %s", o.key, o.source, k, src)
				}
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			t.problem("stat %s: %v", o.source, err)
		}
		for p, d := range nodes {
			if d == o.dev {
				// The kernel hands out dm minor numbers lowest-first; a node
				// under another name with the old number is not the old device.
				logf("note: removed %s's old device number %s now belongs to %s", o.key, majMin(o.dev), p)
			}
		}
	}
	for i := 0; i < many; i++ {
		key := fmt.Sprintf("%s/n%d", t.run, i)
		t.must(t.do(func(ctx context.Context) error { return t.sn.Remove(ctx, key) }), "remove "+key)
	}
	t.cleanup(fmt.Sprintf("after removing the %d", many))
}

// exists tells whether key is there, and its kind.
func (t *devnameTest) exists(key string) (bool, snapshots.Kind) {
	var info snapshots.Info
	err := t.do(func(ctx context.Context) (err error) {
		info, err = t.sn.Stat(ctx, key)
		return err
	})
	if errdefs.IsNotFound(err) {
		return false, 0
	}
	t.must(err, "stat "+key)
	return true, info.Kind
}

// races runs Commit(name, key) and Remove(key) at once, `rounds` times, each on
// a fresh active snapshot, and checks each pair's outcome against the state.
func (t *devnameTest) races(rounds int, parent string) {
	outcomes := map[string]int{}
	answers := map[string]int{} // each distinct pair of answers, logged the first time
	for r := 0; r < rounds; r++ {
		key := fmt.Sprintf("%s/race%d-active", t.run, r)
		name := fmt.Sprintf("%s/race%d", t.run, r)
		t.must(t.do(func(ctx context.Context) error {
			_, err := t.sn.Prepare(ctx, key, parent)
			return err
		}), "prepare "+key)
		// Staggered by 0 to 135 ms, one side then the other, so that each can win: a Commit
		// takes some 50 ms here (it deactivates the device), a Remove a few.
		var commitDelay, removeDelay time.Duration
		if stagger := time.Duration(r/2%10) * 15 * time.Millisecond; r%2 == 0 {
			removeDelay = stagger
		} else {
			commitDelay = stagger
		}
		var commitErr, removeErr error
		var start, wg sync.WaitGroup
		start.Add(1)
		wg.Add(2)
		go func() {
			defer wg.Done()
			start.Wait()
			time.Sleep(commitDelay)
			commitErr = t.do(func(ctx context.Context) error { return t.sn.Commit(ctx, name, key) })
		}()
		go func() {
			defer wg.Done()
			start.Wait()
			time.Sleep(removeDelay)
			removeErr = t.do(func(ctx context.Context) error { return t.sn.Remove(ctx, key) })
		}()
		start.Done()
		wg.Wait()
		keyThere, _ := t.exists(key)
		nameThere, nameKind := t.exists(name)
		var outcome string
		switch {
		case commitErr == nil && errdefs.IsNotFound(removeErr):
			outcome = "commit won"
			if keyThere || !nameThere || nameKind != snapshots.KindCommitted {
				t.problem("round %d: commit won, but the key is there: %v, the name is there: %v (%v)",
					r, keyThere, nameThere, nameKind)
			}
		case removeErr == nil && (errdefs.IsNotFound(commitErr) || errdefs.IsFailedPrecondition(commitErr)):
			outcome = "remove won"
			if keyThere || nameThere {
				t.problem("round %d: remove won, but the key is there: %v, the name is there: %v",
					r, keyThere, nameThere)
			}
		default:
			outcome = "inconsistent"
			t.problem("round %d: Commit answered %v and Remove answered %v (key there: %v, name there: %v)",
				r, commitErr, removeErr, keyThere, nameThere)
		}
		outcomes[outcome]++
		loser := fmt.Sprintf("%s: Commit %v; Remove %v", outcome, commitErr, removeErr)
		loser = strings.ReplaceAll(loser, key, "KEY")
		if answers[loser]++; answers[loser] == 1 {
			logf("round %d (Commit after %s, Remove after %s): %s", r, commitDelay, removeDelay, loser)
		}
		for _, k := range []string{key, name} {
			if there, _ := t.exists(k); there {
				t.must(t.do(func(ctx context.Context) error { return t.sn.Remove(ctx, k) }), "remove "+k)
			}
		}
	}
	logf("Remove vs Commit, %d rounds: commit won %d, remove won %d, inconsistent %d", rounds,
		outcomes["commit won"], outcomes["remove won"], outcomes["inconsistent"])
	t.cleanup("after the races")
}

func runDevname(args []string) {
	fs := flag.NewFlagSet("devname", flag.ExitOnError)
	socket := fs.String("socket", "", "thinsnapd's unix socket")
	removed := fs.Int("removed", 3, "snapshots whose Mounts answers are kept before they are removed")
	many := fs.Int("many", 50, "snapshots prepared after the removal")
	rounds := fs.Int("races", 40, "rounds of Remove racing Commit on one key")
	timeout := fs.Duration("call-timeout", 2*time.Minute, "deadline of each snapshot call")
	_ = fs.Parse(args)
	if *socket == "" {
		fatalf("devname: -socket is required")
	}
	sn, conn := dial(*socket)
	defer conn.Close()
	t := &devnameTest{sn: sn, run: fmt.Sprintf("devname-%d", os.Getpid()), timeout: *timeout}

	// A committed parent, so that most snapshots are children, as containerd's are.
	parent := t.run + "/image"
	t.must(t.do(func(ctx context.Context) error {
		if _, err := sn.Prepare(ctx, parent+"-active", ""); err != nil {
			return err
		}
		return sn.Commit(ctx, parent, parent+"-active")
	}), "image")

	t.removedPaths(*removed, *many, parent)
	t.races(*rounds, parent)

	t.must(t.do(func(ctx context.Context) error { return sn.Remove(ctx, parent) }), "remove "+parent)
	t.cleanup("at the end")
	var left []string
	t.must(t.do(func(ctx context.Context) error {
		return sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if strings.HasPrefix(info.Name, t.run+"/") {
				left = append(left, info.Name)
			}
			return nil
		})
	}), "walk")
	if len(left) > 0 {
		t.problem("snapshots left behind: %v", left)
	}
	if len(t.problems) > 0 {
		fatalf("devname: %d problems; the first: %s", len(t.problems), t.problems[0])
	}
	fmt.Println("devname: all checks passed")
}
