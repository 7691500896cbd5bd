"""Echo stream throughput with the upstream 0.9.0 Python client: writes TOTAL bytes in 64 KiB
chunks while reading them back concurrently.

usage: echo.py inprocess TOTAL | echo.py host TOTAL
Prints {"mb_per_s": ...} (MB = 10^6 bytes, counting the bytes sent once).
"""

import json
import logging
import sys
import time

import anyio

logging.disable(logging.INFO)

mode, total = sys.argv[1], int(sys.argv[2])
CHUNK = 64 * 1024


async def pump(client):
    payload = b"x" * CHUNK
    async with client.stream_async("connect") as s:
        received = 0

        async def reader():
            nonlocal received
            while received < total:
                received += len(await s.receive())

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            sent = 0
            while sent < total:
                await s.send(payload)
                sent += CHUNK
        elapsed = time.perf_counter() - start
    return total / elapsed / 1e6


def run(client):
    mbps = client.portal.call(pump, client)
    print(json.dumps({"mb_per_s": mbps}))


if mode == "inprocess":
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_network.driver import EchoNetwork

    with serve(EchoNetwork()) as echo:
        run(echo)
else:
    from jumpstarter.utils.env import env

    with env() as client:
        run(client.echo)
