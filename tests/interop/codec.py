"""Compress or decompress a file with Python's codecs (an implementation independent of ours).

usage: codec.py compress|decompress gzip|xz|bz2|zstd IN OUT
"""

import bz2
import gzip
import lzma
import sys

from backports import zstd

action, fmt, src, dst = sys.argv[1:5]
codecs = {
    "gzip": (gzip.compress, gzip.decompress),
    "xz": (lzma.compress, lzma.decompress),
    "bz2": (bz2.compress, bz2.decompress),
    "zstd": (zstd.compress, zstd.decompress),
}
compress, decompress = codecs[fmt]
with open(src, "rb") as f:
    data = f.read()
with open(dst, "wb") as f:
    f.write(compress(data) if action == "compress" else decompress(data))
