"""Upstream's Python client (0.9.0) against our exporter with hosted drivers: the vendor driver
(unary, streaming, byte stream), a hosted upstream flasher (resources with an encoding) and a
built-in driver. Prints one JSON line."""

import json
import sys
from pathlib import Path

from jumpstarter.utils.env import env
from jumpstarter.streams.encoding import Compression

work = Path(sys.argv[1])
out = {}
with env() as client:
    out["greet"] = client.custom.greet("alice")
    out["count"] = client.custom.count(2)
    out["echo"] = client.custom.echo(b"ping").decode()
    client.power.on()
    client.power.off()
    flasher = client.bench.flasher
    flasher.flash(str(work / "img.zst"), compression=Compression.ZSTD)
    flasher.dump(str(work / "py-dump.raw"))
    out["dump_equal"] = (work / "py-dump.raw").read_bytes() == (work / "img.raw").read_bytes()
    with client.bench.echo.stream() as s:
        s.send(b"hosted echo")
        out["bench_echo"] = s.receive().decode()
    try:
        client.custom.call("fail", "nope")
    except ValueError as e:
        out["fail"] = [type(e).__name__, str(e)]
print(json.dumps(out))
