// fdio mode: reads or writes through a file descriptor the caller holds open
// (and passed down), with pread/pwrite, so the open file description of the
// holder itself is used, not a new open of the path.
//
//	thinsnap_churn fdio -fd 3 -read 0 -len 0 -out copy.img   # -len 0: to the end
//	thinsnap_churn fdio -fd 3 -write 1048576 -in data.bin     # then fsync
package main

import (
	"flag"
	"io"
	"os"
)

func runFdio(args []string) {
	fs := flag.NewFlagSet("fdio", flag.ExitOnError)
	fd := fs.Int("fd", 3, "inherited descriptor")
	readAt := fs.Int64("read", -1, "byte offset to read from")
	length := fs.Int64("len", 0, "bytes to read (0: to the end)")
	out := fs.String("out", "", "file to write what was read to")
	writeAt := fs.Int64("write", -1, "byte offset to write at")
	in := fs.String("in", "", "file whose content is written")
	_ = fs.Parse(args)
	f := os.NewFile(uintptr(*fd), "held")
	if f == nil {
		fatalf("fdio: bad descriptor %d", *fd)
	}
	switch {
	case *readAt >= 0 && *out != "":
		n := *length
		if n == 0 {
			end, err := f.Seek(0, io.SeekEnd)
			if err != nil {
				fatalf("fdio: size of fd %d: %v", *fd, err)
			}
			n = end - *readAt
		}
		dst, err := os.Create(*out)
		if err != nil {
			fatalf("fdio: %v", err)
		}
		if _, err := io.Copy(dst, io.NewSectionReader(f, *readAt, n)); err != nil {
			fatalf("fdio: read fd %d at %d: %v", *fd, *readAt, err)
		}
		if err := dst.Close(); err != nil {
			fatalf("fdio: %v", err)
		}
	case *writeAt >= 0 && *in != "":
		data, err := os.ReadFile(*in)
		if err != nil {
			fatalf("fdio: %v", err)
		}
		if _, err := f.WriteAt(data, *writeAt); err != nil {
			fatalf("fdio: write fd %d at %d: %v", *fd, *writeAt, err)
		}
		if err := f.Sync(); err != nil {
			fatalf("fdio: fsync fd %d: %v", *fd, err)
		}
	default:
		fatalf("fdio: want -read OFF -out FILE or -write OFF -in FILE")
	}
}
