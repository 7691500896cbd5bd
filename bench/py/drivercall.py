"""DriverCall round trips with the upstream 0.9.0 Python client.

usage: drivercall.py inprocess N   (upstream exporter session in this process, unix socket)
       drivercall.py host N        (the exporter behind JUMPSTARTER_HOST)
Prints the median and p90 round trip in microseconds as JSON.
"""

import json
import logging
import statistics
import sys
import time

logging.disable(logging.INFO)  # do not time log printing

mode, n = sys.argv[1], int(sys.argv[2])


def measure(power):
    for _ in range(50):
        power.on()
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        power.on()
        samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    print(json.dumps({"median_us": statistics.median(samples), "p90_us": samples[int(len(samples) * 0.9)]}))


if mode == "inprocess":
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_power.driver import MockPower

    with serve(MockPower()) as power:
        measure(power)
else:
    from jumpstarter.utils.env import env

    with env() as client:
        measure(client.power)
