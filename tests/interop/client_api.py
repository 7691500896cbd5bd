"""Upstream Jumpstarter 0.9.0 client library against the exporter behind JUMPSTARTER_HOST.

Run inside `jmp shell --exporter-config <demo config> -- python client_api.py TCP_PORT`.
Checks values, value types, shapes and error classes exactly as the Python client sees them,
and prints a JSON summary for the calling test. Exits non-zero on the first mismatch.
"""

import json
import sys

from jumpstarter.client.core import DriverError, DriverInvalidArgument, DriverMethodNotImplemented
from jumpstarter.utils.env import env
from jumpstarter_driver_power.common import PowerReading

tcp_port = int(sys.argv[1])
out = {}


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


def expect_error(cls, fn, *args):
    try:
        fn(*args)
    except cls as e:
        return str(e)
    except Exception as e:  # noqa: BLE001
        check(False, f"expected {cls.__name__}, got {type(e).__name__}: {e}")
    check(False, f"expected {cls.__name__}, got no error")


with env() as client:
    # The tree: names, aliases, nesting, descriptions.
    check(set(client.children) >= {"power", "sync", "echo", "tcp", "hidden", "udp", "unix", "group", "alias"},
          f"children {sorted(client.children)}")
    check(client.alias.uuid == client.power.uuid, "alias shares the power driver's uuid")
    check(client.power.description == "Main PSU", f"description {client.power.description!r}")
    check(client.power.methods_description == {"on": "Turn it on (custom)"},
          f"methods_description {client.power.methods_description!r}")
    check(client.description == "Demo exporter for interop tests", f"root description {client.description!r}")
    check(type(client.group.psu2).__name__ == "PowerClient", f"nested client {type(client.group.psu2)}")

    # Power: results and exact value types.
    check(client.power.on() is None, "on() returns None")
    check(client.power.off() is None, "off() returns None")
    check(client.sync.on() is None, "sync on() returns None")
    readings = list(client.power.read())
    check(readings == [PowerReading(voltage=0.0, current=0.0), PowerReading(voltage=5.0, current=2.0)],
          f"readings {readings}")
    raw = list(client.power.streamingcall("read"))
    check(raw == [{"voltage": 0.0, "current": 0.0}, {"voltage": 5.0, "current": 2.0}], f"raw {raw}")
    check(all(type(v) is float for r in raw for v in r.values()), f"numbers are floats: {raw}")
    client.alias.on()
    client.group.psu2.off()

    # Errors, mapped to the client's exception classes.
    out["wrong_kind"] = expect_error(DriverMethodNotImplemented, client.power.call, "read")
    out["unknown_method"] = expect_error(DriverMethodNotImplemented, client.power.call, "rescue")
    out["too_many_args"] = expect_error(DriverError, client.power.call, "on", 1)
    out["streaming_wrong_kind"] = expect_error(DriverError, lambda: list(client.power.streamingcall("on")))
    out["address_disabled"] = expect_error(DriverInvalidArgument, client.hidden.address)
    out["echo_address"] = expect_error(DriverMethodNotImplemented, client.echo.address)

    # Network: address and streams.
    out["tcp_address"] = client.tcp.address()
    check(out["tcp_address"] == f"tcp://127.0.0.1:{tcp_port}", f"tcp address {out['tcp_address']}")
    with client.echo.stream() as s:
        s.send(b"hello")
        check(s.receive() == b"hello", "echo")
        s.send(b"x" * 100000)
        got = b""
        while len(got) < 100000:
            got += s.receive()
        check(got == b"x" * 100000, "echo 100k")
    # The TCP server answers after our end of stream: the async stream API can send EOF.
    async def tcp_roundtrip():
        async with client.tcp.stream_async("connect") as s:
            await s.send(b"ping over tcp")
            await s.send_eof()
            got = b""
            try:
                while True:
                    got += await s.receive()
            except Exception:  # noqa: BLE001 (end of stream)
                pass
            return got

    got = client.portal.call(tcp_roundtrip)
    check(got == b"PING OVER TCP", f"tcp got {got!r}")

    async def unix_roundtrip():
        async with client.unix.stream_async("connect") as s:
            await s.send(b"ping over unix")
            await s.send_eof()
            got = b""
            try:
                while True:
                    got += await s.receive()
            except Exception:  # noqa: BLE001 (end of stream)
                pass
            return got

    got = client.portal.call(unix_roundtrip)
    check(got == b"PING OVER UNIX", f"unix got {got!r}")
    with client.udp.stream() as s:
        s.send(b"d1")
        check(s.receive() == b"echo:d1", "udp datagram 1")
        s.send(b"d2")
        check(s.receive() == b"echo:d2", "udp datagram 2")

# The library entry point directly: client_from_path with an explicit allow-list.
import os  # noqa: E402
from contextlib import ExitStack  # noqa: E402

from anyio.from_thread import start_blocking_portal  # noqa: E402
from jumpstarter.client.client import client_from_path  # noqa: E402

with start_blocking_portal() as portal, ExitStack() as stack:
    with portal.wrap_async_context_manager(
        client_from_path(os.environ["JUMPSTARTER_HOST"], portal, stack, allow=["jumpstarter_driver_*"], unsafe=False)
    ) as client:
        check(client.power.on() is None, "client_from_path: on()")
        check(len(list(client.power.read())) == 2, "client_from_path: read()")

out["ok"] = True
print(json.dumps(out))
