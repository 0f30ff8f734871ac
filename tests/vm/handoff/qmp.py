#!/usr/bin/env python3
"""QMP commands to a qemu, one after the other, each optionally followed by waiting for an event.
Standard library only.

usage: qmp.py SOCKET COMMAND [ARGS-JSON] [--event NAME [--match KEY=VALUE]...]
              [-- COMMAND [ARGS-JSON] [--event ...]]... [--timeout SECS]

Connects to qemu's QMP unix socket, negotiates capabilities, sends each COMMAND with ARGS-JSON as
its arguments and prints the reply's "return" as one JSON line. After a command with --event, it
waits, on the same connection (events go only to connected clients), for an event NAME whose data
has every KEY=VALUE given, prints it, and only then sends the next command. Exit status: 0 on
success; 1 when qemu answers with an error (its class and description are printed to stderr), 2
on a timeout (SECS for the whole sequence, default 30) or a closed connection.
"""
import argparse
import json
import socket
import sys
import time


def parse(argv):
    """SOCKET, the timeout, and a list of steps (command, arguments, event, {key: value})."""
    timeout = 30.0
    if "--timeout" in argv:
        i = argv.index("--timeout")
        timeout = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if len(argv) < 2:
        sys.exit(__doc__)
    sock, rest, steps = argv[0], argv[1:], []
    while rest:
        n = rest.index("--") if "--" in rest else len(rest)
        p = argparse.ArgumentParser(prog="qmp.py")
        p.add_argument("command")
        p.add_argument("arguments", nargs="?", default="{}")
        p.add_argument("--event")
        p.add_argument("--match", action="append", default=[])
        a = p.parse_args(rest[:n])
        steps.append((a.command, json.loads(a.arguments), a.event,
                      dict(m.split("=", 1) for m in a.match)))
        rest = rest[n + 1:]
    return sock, timeout, steps


def main():
    path, timeout, steps = parse(sys.argv[1:])
    deadline = time.monotonic() + timeout

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

    def matches(e, event, want):
        data = e.get("data", {})
        return e["event"] == event and all(str(data.get(k)) == v for k, v in want.items())

    command, event, want = "connect", None, {}
    try:
        s.settimeout(timeout)
        s.connect(path)
        f = s.makefile("rwb", buffering=0)
        receive()  # the greeting
        execute("qmp_capabilities", None)
        for command, arguments, event, want in steps:
            events.clear()
            print(json.dumps(execute(command, arguments)), flush=True)
            if event:
                while not any(matches(e, event, want) for e in events):
                    r = receive()
                    if "event" in r:
                        events.append(r)
                print(json.dumps(next(e for e in events if matches(e, event, want))), flush=True)
    except (TimeoutError, socket.timeout):
        what = f"event {event} {want}" if event else "the reply"
        print(f"qmp {command}: no {what} within {timeout:g} s", file=sys.stderr)
        sys.exit(2)
    except (ConnectionError, OSError) as e:
        print(f"qmp {command}: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
