"""Storage through the upstream 0.9.0 client library, against the exporter behind JUMPSTARTER_HOST.

usage: storage_ops.py WORKDIR
Flashes and dumps with every compression (storage mux flasher, mux, flasher with targets) and
exercises the Opendal surface on `fs` (fs service) and `mem` (memory service). Prints one JSON
object: the results, in a form the calling test compares between our exporter and upstream's.
"""

import bz2
import gzip
import hashlib
import json
import lzma
import os
import sys

from backports import zstd
from jumpstarter.client.core import DriverError
from jumpstarter.streams.encoding import Compression
from jumpstarter.utils.env import env

work = sys.argv[1]
data = bytes((i * 2654435761 >> 13) & 0xFF for i in range(4096)) * 600  # ~2.4 MB
src = os.path.join(work, "img.raw")
with open(src, "wb") as f:
    f.write(data)
compressors = {
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "bz2": bz2.compress,
    "zstd": zstd.compress,
}
decompressors = {
    "gzip": gzip.decompress,
    "xz": lzma.decompress,
    "bz2": bz2.decompress,
    "zstd": zstd.decompress,
}
out = {}


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]


def error_of(fn, *args, **kwargs):
    """The class name of the DriverError a call raises (unwrapping anyio's exception groups)."""
    try:
        fn(*args, **kwargs)
        return None
    except BaseException as e:  # noqa: BLE001
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        if isinstance(e, DriverError):
            return type(e).__name__
        raise


with env() as client:
    want = sha(data)
    # StorageMuxFlasher: flash (host, write, dut) and dump, raw and with every compression.
    client.storage.flash(src)
    dump = os.path.join(work, "dump.raw")
    client.storage.dump(dump)
    out["raw"] = sha(open(dump, "rb").read()) == want
    for name, compress in compressors.items():
        path = os.path.join(work, "img." + name)
        with open(path, "wb") as f:
            f.write(compress(data))
        client.storage.flash(path, compression=Compression(name))
        dump = os.path.join(work, "dump." + name)
        client.storage.dump(dump, compression=Compression(name))
        with open(dump, "rb") as f:
            try:
                out[name] = sha(decompressors[name](f.read())) == want
            except (EOFError, ValueError, lzma.LZMAError, zstd.ZstdError):
                # Upstream's exporter never ends its compressed dumps (no trailer).
                out[name] = "truncated"

    # StorageMux: write_local_file / read_local_file.
    client.mux.host()
    client.mux.write_local_file(src)
    back = os.path.join(work, "mux.raw")
    client.mux.read_local_file(back)
    client.mux.dut()
    out["mux"] = sha(open(back, "rb").read()) == want

    # Flasher with targets.
    client.flasher.flash({"boot": src, "root": os.path.join(work, "img.gzip")})
    boot = os.path.join(work, "boot.raw")
    client.flasher.dump(boot, target="boot")
    out["flasher"] = sha(open(boot, "rb").read()) == want
    out["flasher_missing_target"] = error_of(client.flasher.dump, os.path.join(work, "x"), target="nope")

    # Opendal, on both services.
    for node in ("fs", "mem"):
        fs = getattr(client, node)
        r = {}
        fs.write_bytes("dir/a.txt", b"hello opendal")
        r["read"] = fs.read_bytes("dir/a.txt").decode()
        st = fs.stat("dir/a.txt")
        r["stat"] = [st.content_length, st.mode.is_file(), st.mode.is_dir()]
        r["hash"] = [fs.hash("dir/a.txt"), fs.hash("dir/a.txt", "md5")]
        r["exists"] = [fs.exists("dir/a.txt"), fs.exists("dir/nope.txt")]
        fs.create_dir("dir/sub/")
        fs.write_bytes("dir/sub/deep.txt", b"deep")
        r["list"] = sorted(fs.list("dir/"))
        r["scan"] = sorted(fs.scan("dir/"))
        r["copy"] = error_of(fs.copy, "dir/a.txt", "dir/b.txt")
        r["rename"] = error_of(fs.rename, "dir/a.txt", "dir/c.txt")
        f = fs.open("dir/sub/deep.txt", "rb")
        r["file"] = [f.readable(), f.writable(), f.seekable(), f.seek(2), f.tell(), f.read_bytes().decode()]
        f.close()
        r["closed"] = f.closed
        r["stat_missing"] = error_of(fs.stat, "dir/nope.txt")
        r["presign"] = error_of(fs.presign_read, "dir/sub/deep.txt", 60)
        r["capability_keys"] = sorted(fs.capability().model_dump().keys())
        r["created"] = sorted(fs.get_created_resources())
        fs.delete("dir/sub/deep.txt")
        fs.remove_all("dir/")
        r["after_remove"] = fs.exists("dir/sub/deep.txt")
        out[node] = r

print(json.dumps(out, sort_keys=True), flush=True)
# Skip interpreter finalization: opendal's Python binding can abort there ("Fatal Python error:
# PyGILState_Release", apache/opendal#1723) after all the work is done.
os._exit(0)
