// e2etool is the Go half of tests/e2e/ctr-scenario.sh. It is built statically
// on the host (GOPATH mode) and run inside the test VM, and inside the
// container through a bind mount.
//
//	e2etool mkimage -o image.tar -busybox /bin/busybox -ref NAME:TAG
//	    writes an OCI image archive (oci-layout, index.json, blobs/sha256/...)
//	    whose three layers exercise whiteouts, opaque dirs, hard links,
//	    symlinks, xattrs and setuid.
//	e2etool getxattr PATH NAME
//	    prints the value of one extended attribute (busybox has no getfattr).
//	e2etool snapshots SOCKET
//	    lists every snapshot thinsnapd holds (no namespace, like containerd's
//	    GC), one "kind name" per line.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// XattrName and XattrValue are the attribute layer 3 sets on /xattr/file.
const (
	XattrName  = "user.thinsnap"
	XattrValue = "e2e-xattr-value"
)

// A fixed timestamp keeps the archive reproducible.
var epoch = time.Unix(1700000000, 0)

type entry struct {
	hdr  tar.Header
	data []byte
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
}

func file(name string, mode int64, data string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, data: []byte(data)}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// layerTar returns the uncompressed tar stream of one layer.
func layerTar(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		h.ModTime = epoch
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

// archiveWriter collects the files of the outer OCI layout tar.
type archiveWriter struct {
	tw *tar.Writer
}

func (a *archiveWriter) add(name string, data []byte) error {
	h := tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}
	if err := a.tw.WriteHeader(&h); err != nil {
		return err
	}
	_, err := a.tw.Write(data)
	return err
}

func (a *archiveWriter) addBlob(mediaType string, data []byte) (descriptor, error) {
	d := digestOf(data)
	if err := a.add("blobs/sha256/"+d[len("sha256:"):], data); err != nil {
		return descriptor{}, err
	}
	return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
}

func (a *archiveWriter) addJSON(mediaType string, v interface{}) (descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return descriptor{}, err
	}
	return a.addBlob(mediaType, data)
}

func imageLayers(busybox []byte) [][]entry {
	xattrFile := file("xattr/file", 0o644, "has an xattr\n")
	xattrFile.hdr.PAXRecords = map[string]string{"SCHILY.xattr." + XattrName: XattrValue}
	return [][]entry{
		// Layer 1: a busybox root plus content the upper layers delete.
		{
			dir("bin", 0o755),
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755}, data: busybox},
			symlink("bin/sh", "busybox"),
			dir("etc", 0o755),
			file("etc/passwd", 0o644, "root:x:0:0:root:/:/bin/sh\n"),
			file("etc/group", 0o644, "root:x:0:\n"),
			dir("tmp", 0o1777),
			dir("data", 0o755),
			file("data/gone.txt", 0o644, "layer1: must be whited out\n"),
			file("data/keep.txt", 0o644, "layer1\n"),
			dir("opq", 0o755),
			file("opq/old1", 0o644, "layer1: hidden by the opaque dir\n"),
			dir("opq/sub", 0o755),
			file("opq/sub/old2", 0o644, "layer1: hidden by the opaque dir\n"),
		},
		// Layer 2: a whiteout, an opaque dir, a hard link and symlinks.
		{
			dir("data", 0o755),
			file("data/.wh.gone.txt", 0o644, ""),
			dir("opq", 0o755),
			file("opq/.wh..wh..opq", 0o644, ""),
			file("opq/new1", 0o644, "layer2\n"),
			dir("links", 0o755),
			file("links/target.txt", 0o644, "link target\n"),
			hardlink("links/hard", "links/target.txt"),
			symlink("links/rel", "target.txt"),
			symlink("links/abs", "/links/target.txt"),
		},
		// Layer 3: an xattr, a setuid file, and an overwrite.
		{
			dir("xattr", 0o755),
			xattrFile,
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/suid", Mode: 0o4755}, data: []byte("#!/bin/sh\n")},
			dir("data", 0o755),
			file("data/keep.txt", 0o644, "layer3\n"),
		},
	}
}

func mkimage(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ExitOnError)
	out := fs.String("o", "", "output archive")
	busyboxPath := fs.String("busybox", "/bin/busybox", "static busybox to install as /bin/busybox")
	ref := fs.String("ref", "", "image reference (org.opencontainers.image.ref.name)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *ref == "" {
		return fmt.Errorf("mkimage: -o and -ref are required")
	}
	busybox, err := os.ReadFile(*busyboxPath)
	if err != nil {
		return err
	}

	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	a := &archiveWriter{tw: tar.NewWriter(f)}

	var layerDescs []descriptor
	var diffIDs []string
	for i, entries := range imageLayers(busybox) {
		raw, err := layerTar(entries)
		if err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		if _, err := zw.Write(raw); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		d, err := a.addBlob("application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes())
		if err != nil {
			return err
		}
		layerDescs = append(layerDescs, d)
		diffIDs = append(diffIDs, digestOf(raw))
	}

	config := map[string]interface{}{
		"created":      epoch.UTC().Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]interface{}{
			"Env": []string{"PATH=/bin"},
			"Cmd": []string{"/bin/sh"},
		},
		"rootfs": map[string]interface{}{"type": "layers", "diff_ids": diffIDs},
	}
	configDesc, err := a.addJSON("application/vnd.oci.image.config.v1+json", config)
	if err != nil {
		return err
	}
	manifest := map[string]interface{}{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        layerDescs,
	}
	manifestDesc, err := a.addJSON("application/vnd.oci.image.manifest.v1+json", manifest)
	if err != nil {
		return err
	}
	manifestDesc.Annotations = map[string]string{"org.opencontainers.image.ref.name": *ref}
	manifestDesc.Platform = map[string]string{"architecture": "amd64", "os": "linux"}

	index, err := json.Marshal(map[string]interface{}{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{manifestDesc},
	})
	if err != nil {
		return err
	}
	if err := a.add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := a.add("index.json", index); err != nil {
		return err
	}
	if err := a.tw.Close(); err != nil {
		return err
	}
	for i, d := range diffIDs {
		fmt.Printf("layer %d diff_id %s\n", i+1, d)
	}
	fmt.Printf("manifest %s\n", manifestDesc.Digest)
	return f.Close()
}

func getxattr(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: getxattr PATH NAME")
	}
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(args[0], args[1], buf)
	if err != nil {
		return fmt.Errorf("getxattr %s %s: %w", args[0], args[1], err)
	}
	fmt.Println(string(buf[:n]))
	return nil
}

func listSnapshots(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: snapshots SOCKET")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, dialer.DialAddress(args[0]),
		grpc.WithInsecure(), grpc.WithBlock(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		return fmt.Errorf("dial %s: %w", args[0], err)
	}
	defer conn.Close()
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "thinsnap")
	return sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		fmt.Printf("%s %s\n", info.Kind, info.Name)
		return nil
	})
}

func populate(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: populate SOCKET N")
	}
	total, err := strconv.Atoi(args[1])
	if err != nil || total < 20 {
		return fmt.Errorf("N must be a number >= 20, got %q", args[1])
	}
	ctx := context.Background()
	conn, err := grpc.DialContext(ctx, dialer.DialAddress(args[0]),
		grpc.WithInsecure(), grpc.WithBlock(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		return fmt.Errorf("dial %s: %w", args[0], err)
	}
	defer conn.Close()
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "thinsnap")
	half := total / 2
	// run calls f(i) for i in [0, n) on `workers` goroutines; the first error wins.
	run := func(n, workers int, f func(i int) error) error {
		var mu sync.Mutex
		var first error
		var wg sync.WaitGroup
		next := make(chan int)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if err := f(i); err != nil {
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		return first
	}
	// Layer i is the child of layer i-10: ten chains grow side by side.
	if err := run(10, 10, func(chain int) error {
		parent := ""
		for i := chain; i < half; i += 10 {
			key, name := fmt.Sprintf("p%d", i), fmt.Sprintf("l%d", i)
			if _, err := sn.Prepare(ctx, key, parent); err != nil {
				return fmt.Errorf("prepare %s: %w", key, err)
			}
			if err := sn.Commit(ctx, name, key); err != nil {
				return fmt.Errorf("commit %s: %w", name, err)
			}
			parent = name
		}
		return nil
	}); err != nil {
		return err
	}
	return run(total-half, 8, func(i int) error {
		parent := fmt.Sprintf("l%d", i%half)
		if i%10 == 9 {
			_, err := sn.View(ctx, fmt.Sprintf("v%d", i), parent)
			return err
		}
		_, err := sn.Prepare(ctx, fmt.Sprintf("a%d", i), parent)
		return err
	})
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2etool mkimage|getxattr|snapshots|populate ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "mkimage":
		err = mkimage(os.Args[2:])
	case "getxattr":
		err = getxattr(os.Args[2:])
	case "snapshots":
		err = listSnapshots(os.Args[2:])
	case "populate":
		err = populate(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2etool:", err)
		os.Exit(1)
	}
}
