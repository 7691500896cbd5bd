"""Upstream Jumpstarter 0.9.0's PySerialClient against the exporter behind JUMPSTARTER_HOST.

Run inside `jmp shell --exporter-config <config> -- python serial_client.py LOOP [DEVICE]`,
where LOOP names a PySerial driver on loop:// and DEVICE (optional) one on a tty whose far
end answers each line `L` with `got:<L in capitals>`.

Checks results and error classes as the Python client sees them; prints a JSON summary on
the last line for the calling test. Exits non-zero on the first mismatch.
"""

import json
import sys
import threading

from anyio import EndOfStream
from jumpstarter.client.core import DriverError
from jumpstarter.utils.env import env

loop_name = sys.argv[1]
device_name = sys.argv[2] if len(sys.argv) > 2 else None
out = {}


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


def error_of(fn, *args):
    try:
        fn(*args)
    except DriverError as e:
        return type(e).__name__, str(e)
    check(False, f"{fn} {args}: expected a DriverError")


with env() as client:
    loop = client.children[loop_name]
    out["client_class"] = type(loop).__name__

    # pexpect over the client's local port forward.
    with loop.pexpect() as p:
        p.sendline("hello loop")
        p.expect("hello loop", timeout=30)
        out["pexpect_loop"] = True

    # The raw stream; close() ends it from the exporter side (EndOfStream here).
    with loop.stream() as st:
        st.send(b"raw bytes \x00\xff")
        got = b""
        while len(got) < 12:
            got += st.receive()
        check(got == b"raw bytes \x00\xff", f"raw echo {got!r}")
        ended = {}

        def reader():
            try:
                ended["data"] = st.receive()
            except EndOfStream:
                ended["end"] = "EndOfStream"
            except Exception as e:  # noqa: BLE001
                ended["end"] = type(e).__name__

        t = threading.Thread(target=reader)
        t.start()
        check(loop.call("close") is None, "close() returns None")
        t.join(30)
        check(not t.is_alive(), "the blocked receive ended after close()")
        out["after_close"] = ended.get("end")

    # Modem lines: accepted and ignored on loop://.
    check(loop.call("set_dtr", True) is None, "set_dtr on loop")
    check(loop.call("set_rts", False) is None, "set_rts on loop")
    out["missing_arg"] = error_of(loop.call, "set_dtr")

    if device_name:
        dev = client.children[device_name]
        with dev.pexpect() as p:
            p.sendline("ping")
            p.expect("got:PING", timeout=30)
            p.sendline("second line")
            p.expect("got:SECOND LINE", timeout=30)
            out["pexpect_device"] = True
        out["device_set_dtr"] = error_of(dev.call, "set_dtr", True)
        out["device_set_rts"] = error_of(dev.call, "set_rts", False)

print(json.dumps(out))
