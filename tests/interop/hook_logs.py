"""A grpcio client (upstream's generated stubs) watching a direct-mode exporter's hooks.

Usage: hook_logs.py HOST:PORT PASSPHRASE

Waits for LEASE_READY, reads LogStream (the beforeLease lines are in its backlog), calls
EndSession, and keeps
reading until the afterLease hook's last line ("after done"). Prints one JSON object: the
records as [severity, message, source name], the EndSession answer, and GetStatus before and
after EndSession.
"""

import asyncio
import json
import sys

import grpc
from google.protobuf import empty_pb2
from jumpstarter_protocol.jumpstarter.v1 import common_pb2, jumpstarter_pb2, jumpstarter_pb2_grpc


def status(resp):
    return {
        "status": common_pb2.ExporterStatus.Name(resp.status),
        "message": resp.message,
        "version": resp.status_version,
        "previous": common_pb2.ExporterStatus.Name(resp.previous_status) if resp.HasField("previous_status") else None,
    }


async def main(address, passphrase):
    md = (("x-jumpstarter-passphrase", passphrase),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = jumpstarter_pb2_grpc.ExporterServiceStub(channel)
        # Wait for the beforeLease hook, as upstream's shell does.
        for _ in range(600):
            before = status(await stub.GetStatus(jumpstarter_pb2.GetStatusRequest(), metadata=md, timeout=5))
            if before["status"] == "EXPORTER_STATUS_LEASE_READY":
                break
            await asyncio.sleep(0.1)
        records = []
        stream = stub.LogStream(empty_pb2.Empty(), metadata=md)

        async def read():
            async for r in stream:
                records.append([r.severity, r.message, common_pb2.LogSource.Name(r.source)])
                if r.message == "after done":
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.5)
        end = await stub.EndSession(jumpstarter_pb2.EndSessionRequest(), metadata=md, timeout=30)
        after = status(await stub.GetStatus(jumpstarter_pb2.GetStatusRequest(), metadata=md, timeout=5))
        await asyncio.wait_for(reader, 30)
        stream.cancel()
        print(
            json.dumps(
                {
                    "records": records,
                    "end": {"success": end.success, "message": end.message},
                    "before": before,
                    "after": after,
                }
            )
        )


asyncio.run(main(sys.argv[1], sys.argv[2]))
