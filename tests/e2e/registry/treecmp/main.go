// treecmp records a directory tree path by path and compares a tree with such
// a record. The registry tests use it to check that an image pulled into
// thinsnap unpacks into exactly the tree the image was built from.
//
//	treecmp manifest DIR > FILE
//	    writes one line per path under DIR (DIR itself is "."), sorted by
//	    path: type, permission bits (with setuid/setgid/sticky), uid, gid,
//	    link count, hard-link group, symlink target, device number and the
//	    sha256 of a regular file's content.
//	treecmp compare FILE DIR
//	    records DIR the same way and prints every path whose line differs,
//	    is missing or is extra; exits 1 if there is any difference. It
//	    prints how many paths it compared either way.
//
// Fields are tab-separated with Go-quoted paths and link targets, so names
// with any bytes in them round-trip. The hard-link group of a path is the
// smallest path sharing its inode, which checks that links in a layer stay
// links after unpacking without depending on inode numbers. Times are not
// recorded: tar keeps only seconds and unpacking sets directory times as it
// goes, so they say nothing about the snapshotter.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

type record struct {
	path string
	line string // every field after the path
}

type inodeKey struct{ dev, ino uint64 }

func typeName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "chardev"
	case m&fs.ModeDevice != 0:
		return "blockdev"
	}
	return "unknown"
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// walk records every path under root, sorted by path.
func walk(root string) ([]record, error) {
	type entry struct {
		rel   string
		st    *syscall.Stat_t
		mode  fs.FileMode
		link  string
		sha   string
		group string
	}
	var entries []*entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat_t", p)
		}
		e := &entry{rel: rel, st: st, mode: info.Mode()}
		if info.Mode()&fs.ModeSymlink != 0 {
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if info.Mode().IsRegular() {
			if e.sha, err = fileSHA256(p); err != nil {
				return err
			}
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })
	// Entries are sorted, so the first path seen for an inode is its smallest.
	first := map[inodeKey]string{}
	for _, e := range entries {
		if e.mode.IsDir() {
			continue
		}
		k := inodeKey{uint64(e.st.Dev), e.st.Ino}
		if g, ok := first[k]; ok {
			e.group = g
		} else {
			first[k] = e.rel
			e.group = e.rel
		}
	}
	records := make([]record, 0, len(entries))
	for _, e := range entries {
		perm := uint32(e.mode.Perm())
		if e.mode&fs.ModeSetuid != 0 {
			perm |= 0o4000
		}
		if e.mode&fs.ModeSetgid != 0 {
			perm |= 0o2000
		}
		if e.mode&fs.ModeSticky != 0 {
			perm |= 0o1000
		}
		nlink := "-" // a directory's link count depends on the filesystem's subdirectory accounting
		group := "-"
		if !e.mode.IsDir() {
			nlink = strconv.FormatUint(uint64(e.st.Nlink), 10)
			group = strconv.Quote(e.group)
		}
		rdev := "-"
		if e.mode&fs.ModeDevice != 0 {
			r := uint64(e.st.Rdev)
			rdev = fmt.Sprintf("%d:%d", ((r>>8)&0xfff)|((r>>32)&^0xfff), (r&0xff)|((r>>12)&^0xff))
		}
		link, sha := "-", "-"
		if e.link != "" {
			link = strconv.Quote(e.link)
		}
		if e.sha != "" {
			sha = e.sha
		}
		records = append(records, record{
			path: strconv.Quote(e.rel),
			line: strings.Join([]string{typeName(e.mode), fmt.Sprintf("%04o", perm),
				strconv.FormatUint(uint64(e.st.Uid), 10), strconv.FormatUint(uint64(e.st.Gid), 10),
				nlink, group, link, rdev, sha}, "\t"),
		})
	}
	// Quoting can reorder names with escaped bytes; compare walks both lists in this order.
	sort.Slice(records, func(i, j int) bool { return records[i].path < records[j].path })
	return records, nil
}

func readManifest(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var records []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		p, rest, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			return nil, fmt.Errorf("%s:%d: malformed line", path, n)
		}
		records = append(records, record{path: p, line: rest})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !sort.SliceIsSorted(records, func(i, j int) bool { return records[i].path < records[j].path }) {
		return nil, fmt.Errorf("%s: not sorted by path", path)
	}
	return records, nil
}

// compare prints each difference and returns how many paths were compared
// and how many differ.
func compare(want, got []record, out io.Writer) (compared, differences int) {
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || (i < len(want) && want[i].path < got[j].path):
			fmt.Fprintf(out, "MISSING %s\n  want %s\n", want[i].path, want[i].line)
			i++
			differences++
		case i == len(want) || got[j].path < want[i].path:
			fmt.Fprintf(out, "EXTRA   %s\n  got  %s\n", got[j].path, got[j].line)
			j++
			differences++
		default:
			compared++
			if want[i].line != got[j].line {
				fmt.Fprintf(out, "DIFFERS %s\n  want %s\n  got  %s\n", want[i].path, want[i].line, got[j].line)
				differences++
			}
			i++
			j++
		}
	}
	return compared, differences
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "manifest" {
		records, err := walk(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "treecmp:", err)
			os.Exit(2)
		}
		w := bufio.NewWriter(os.Stdout)
		for _, r := range records {
			fmt.Fprintf(w, "%s\t%s\n", r.path, r.line)
		}
		if err := w.Flush(); err != nil {
			fmt.Fprintln(os.Stderr, "treecmp:", err)
			os.Exit(2)
		}
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "compare" {
		want, err := readManifest(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "treecmp:", err)
			os.Exit(2)
		}
		got, err := walk(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, "treecmp:", err)
			os.Exit(2)
		}
		compared, differences := compare(want, got, os.Stdout)
		fmt.Printf("treecmp: %d paths expected, %d found, %d compared field by field, %d differences\n",
			len(want), len(got), compared, differences)
		if differences != 0 || len(want) == 0 {
			os.Exit(1)
		}
		return
	}
	fmt.Fprintln(os.Stderr, "usage: treecmp manifest DIR | treecmp compare MANIFEST DIR")
	os.Exit(2)
}
