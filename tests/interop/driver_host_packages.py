"""Upstream driver packages we do not port (jumpstarter-driver-http, jumpstarter-driver-ssh),
hosted by our exporter next to built-in drivers, used through upstream's Python client.
Prints one JSON line."""

import json
import sys
import urllib.request
from pathlib import Path

from jumpstarter.utils.env import env

work = Path(sys.argv[1])
out = {}
with env() as client:
    # HttpServer: an upload (resource stream) into its storage child, served over HTTP.
    http = client.http
    http.start()
    url = http.put_file("page.bin", str(work / "page.bin"))
    with urllib.request.urlopen(url) as r:
        out["http_equal"] = r.read() == (work / "page.bin").read_bytes()
    # ... and a download back through the resource stream.
    http.storage.read_into_path("page.bin", str(work / "back.bin"))
    out["download_equal"] = (work / "back.bin").read_bytes() == (work / "page.bin").read_bytes()
    out["http_url_prefix"] = http.get_url().startswith("http://127.0.0.1:")
    http.stop()
    # SSHWrapper: unary calls and the byte stream of its hosted tcp child.
    out["ssh_user"] = client.ssh.call("get_default_username")
    async def tcp_roundtrip():
        async with client.ssh.tcp.stream_async("connect") as s:
            await s.send(b"through the host")
            await s.send_eof()
            got = b""
            try:
                while True:
                    got += await s.receive()
            except Exception:  # noqa: BLE001 (end of stream)
                pass
            return got

    out["tcp"] = client.portal.call(tcp_roundtrip).decode()
    # A built-in alias of a hosted node, and built-in drivers beside them.
    out["alias_same"] = client.tunnel.uuid == client.ssh.tcp.uuid
    client.power.on()
    out["power"] = "ok"
print(json.dumps(out))
