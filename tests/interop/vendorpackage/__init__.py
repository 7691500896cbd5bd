"""A lab's own driver package, as the driver-host tests install it (copied into a temporary
directory on PYTHONPATH). `CustomDriver` has a unary, a streaming and a byte-stream method, plus
methods that crash or hang its host for the bad-input tests."""

import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from anyio import create_memory_object_stream
from anyio.streams.stapled import StapledObjectStream
from jumpstarter.driver import Driver, export, exportstream


@dataclass(kw_only=True)
class CustomDriver(Driver):
    hello: str

    @classmethod
    def client(cls) -> str:
        return "vendorpackage.client.CustomClient"

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if self.hello == "explode":
            raise ValueError("hello must not be 'explode'")

    @export
    def greet(self, name: str) -> str:
        self.logger.info("greeting %s", name)
        return "%s, %s" % (self.hello, name)

    @export
    def count(self, n: int):
        for i in range(int(n)):
            yield {"i": i, "hello": self.hello}

    @exportstream
    @asynccontextmanager
    async def connect(self):
        tx, rx = create_memory_object_stream(32)
        async with StapledObjectStream(tx, rx) as stream:
            yield stream

    @export
    async def consume(self, src) -> int:
        # Reads a resource (an upload) to its end; returns how many bytes it had.
        total = 0
        async with self.resource(src) as res:
            async for chunk in res:
                total += len(chunk)
        return total

    @export
    def fail(self, text: str):
        raise ValueError(text)

    @export
    def crash(self):
        os._exit(17)

    @export
    async def freeze(self):
        # Blocks the host's event loop: the host stops answering altogether.
        time.sleep(3600)


from jumpstarter_driver_composite.driver import CompositeInterface  # noqa: E402


@dataclass(kw_only=True)
class Bench(CompositeInterface, Driver):
    """A bench grouping upstream drivers; the whole subtree runs in the driver host."""
