"""Serial console round trips with the upstream 0.9.0 Python client: sends a line on the
`serial` driver's stream and waits for the device's answer (the same line), N times.

usage: serial.py N   (the exporter behind JUMPSTARTER_HOST)
Prints the median and p90 round trip in microseconds as JSON.
"""

import json
import logging
import statistics
import sys
import time

from jumpstarter.utils.env import env

logging.disable(logging.INFO)

n = int(sys.argv[1])

with env() as client:
    with client.serial.stream() as s:
        samples = []
        for i in range(n + 50):
            msg = f"ping {i}\n".encode()
            t = time.perf_counter_ns()
            s.send(msg)
            got = b""
            while len(got) < len(msg):
                got += s.receive()
            if got != msg:
                raise SystemExit(f"unexpected answer {got!r}")
            if i >= 50:
                samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    print(json.dumps({"median_us": statistics.median(samples), "p90_us": samples[int(len(samples) * 0.9)]}))
