#!/usr/bin/env python3
"""One QMP command to a qemu, optionally followed by waiting for an event (standard library only).

usage: qmp.py SOCKET COMMAND [ARGS-JSON] [--event NAME [--match KEY=VALUE]...] [--timeout SECS]

Connects to qemu's QMP unix socket, negotiates capabilities, sends COMMAND with ARGS-JSON as its
arguments and prints the reply's "return" as one JSON line. With --event, it then waits, on the
same connection (events go only to connected clients), for an event NAME whose data has every
KEY=VALUE given, and prints it. Exit status: 0 on success; 1 when qemu answers with an error (its
class and description are printed to stderr), 2 on a timeout or a closed connection.
"""
import argparse
import json
import socket
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("socket")
    p.add_argument("command")
    p.add_argument("arguments", nargs="?", default="{}")
    p.add_argument("--event")
    p.add_argument("--match", action="append", default=[])
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    want = dict(m.split("=", 1) for m in a.match)

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    f = None
    events = []

    def receive():
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        s.settimeout(left)
        line = f.readline()
        if not line:
            raise ConnectionError("qemu closed the QMP connection")
        return json.loads(line)

    def execute(command, arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        f.write(json.dumps(msg).encode() + b"\n")
        while True:
            r = receive()
            if "event" in r:
                events.append(r)
            elif "error" in r:
                print(f"qmp {command}: {r['error'].get('class')}: {r['error'].get('desc')}",
                      file=sys.stderr)
                sys.exit(1)
            elif "return" in r:
                return r["return"]

    def matches(e):
        data = e.get("data", {})
        return e["event"] == a.event and all(str(data.get(k)) == v for k, v in want.items())

    try:
        s.settimeout(a.timeout)
        s.connect(a.socket)
        f = s.makefile("rwb", buffering=0)
        receive()  # the greeting
        execute("qmp_capabilities", None)
        print(json.dumps(execute(a.command, json.loads(a.arguments))), flush=True)
        if a.event:
            while not any(matches(e) for e in events):
                r = receive()
                if "event" in r:
                    events.append(r)
            print(json.dumps(next(e for e in events if matches(e))), flush=True)
    except (TimeoutError, socket.timeout):
        what = f"event {a.event} {want}" if a.event else "the reply"
        print(f"qmp {a.command}: no {what} within {a.timeout:g} s", file=sys.stderr)
        sys.exit(2)
    except (ConnectionError, OSError) as e:
        print(f"qmp {a.command}: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
