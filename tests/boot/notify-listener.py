#!/usr/bin/python3
"""Plays systemd's side of sd_notify for tests/boot/boot-sequence.sh.

notify-listener.py SOCKET OUT: binds a unix datagram socket at SOCKET (the
$NOTIFY_SOCKET handed to a Type=notify service) and appends every message it
receives to OUT, one line per assignment (READY=1, STATUS=..., STOPPING=1),
flushed at once. Runs until killed.
"""
import os
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
with open(out, "a", buffering=1) as f:
    f.write("LISTENING=1\n")
    while True:
        data = sock.recv(4096)
        for line in data.decode(errors="replace").splitlines():
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
