"""Raw protocol checks with upstream's generated stubs (grpcio, as the 0.9.0 client uses it).

Run with JUMPSTARTER_HOST set to a session's unix socket. Checks the report layout, status
codes of every error path, GetStatus, EndSession, LogStream and the Stream metadata rules.
Prints a JSON summary; exits non-zero on the first mismatch.
"""

import asyncio
import json
import os
import sys

import grpc
from google.protobuf import empty_pb2, struct_pb2
from jumpstarter_protocol.jumpstarter.v1 import (
    common_pb2,
    jumpstarter_pb2,
    jumpstarter_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)

out = {}


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


async def expect_code(code, coro):
    try:
        await coro
    except grpc.aio.AioRpcError as e:
        check(e.code() == code, f"expected {code}, got {e.code()}: {e.details()}")
        return e.details()
    check(False, f"expected {code}, got success")


async def main():
    path = os.environ["JUMPSTARTER_HOST"]
    async with grpc.aio.insecure_channel(f"unix://{path}") as ch:
        ex = jumpstarter_pb2_grpc.ExporterServiceStub(ch)
        rt = router_pb2_grpc.RouterServiceStub(ch)

        report = await ex.GetReport(empty_pb2.Empty())
        reports = list(report.reports)
        root = reports[0]
        check(not root.HasField("parent_uuid"), "root has no parent")
        check(dict(root.labels) == {"jumpstarter.dev/client": "jumpstarter_driver_composite.client.CompositeClient"},
              f"root labels {dict(root.labels)}")
        seen = set()
        for r in reports:
            if r.HasField("parent_uuid"):
                check(r.parent_uuid in seen, f"parent of {r.uuid} listed first")
                check("jumpstarter.dev/name" in r.labels, f"name label on {r.uuid}")
            seen.add(r.uuid)
        names = [r.labels.get("jumpstarter.dev/name") for r in reports]
        out["names"] = names
        by_name = {r.labels.get("jumpstarter.dev/name"): r for r in reports}
        check(by_name["alias"].uuid == by_name["power"].uuid, "alias repeats the power uuid")
        check(by_name["alias"].parent_uuid == root.uuid, "alias parent is the root")
        check(by_name["power"].description == "Main PSU", "description")
        check(dict(by_name["power"].methods_description) == {"on": "Turn it on (custom)"}, "methods_description")
        check(not by_name["echo"].HasField("description"), "no description on echo")
        power = by_name["power"].uuid

        # GetStatus: LEASE_READY, version 1, previous AVAILABLE, message set.
        st = await ex.GetStatus(jumpstarter_pb2.GetStatusRequest())
        check(st.status == common_pb2.EXPORTER_STATUS_LEASE_READY, f"status {st.status}")
        check(st.HasField("message"), "status message present")
        check(st.HasField("previous_status") and st.previous_status == common_pb2.EXPORTER_STATUS_AVAILABLE,
              "previous status AVAILABLE")
        out["status_version"] = st.status_version

        es = await ex.EndSession(jumpstarter_pb2.EndSessionRequest())
        check(not es.success and es.message == "No active lease context", f"EndSession {es}")

        # DriverCall: result always present, null encoded explicitly.
        resp = await ex.DriverCall(jumpstarter_pb2.DriverCallRequest(uuid=power, method="on"))
        check(resp.HasField("result") and resp.result.WhichOneof("kind") == "null_value", "null result")
        check(resp.uuid != power and len(resp.uuid) == 36, "fresh response uuid")

        out["bad_uuid"] = await expect_code(grpc.StatusCode.UNKNOWN, ex.DriverCall(
            jumpstarter_pb2.DriverCallRequest(uuid="not-a-uuid", method="on")))
        out["unknown_uuid"] = await expect_code(grpc.StatusCode.UNKNOWN, ex.DriverCall(
            jumpstarter_pb2.DriverCallRequest(uuid="00000000-0000-0000-0000-000000000000", method="on")))
        out["unknown_method"] = await expect_code(grpc.StatusCode.NOT_FOUND, ex.DriverCall(
            jumpstarter_pb2.DriverCallRequest(uuid=power, method="nosuch")))
        out["wrong_kind"] = await expect_code(grpc.StatusCode.NOT_FOUND, ex.DriverCall(
            jumpstarter_pb2.DriverCallRequest(uuid=power, method="read")))
        out["arity"] = await expect_code(grpc.StatusCode.UNKNOWN, ex.DriverCall(
            jumpstarter_pb2.DriverCallRequest(uuid=power, method="off", args=[struct_pb2.Value(number_value=1)])))
        # A uuid without dashes is accepted, as Python's UUID() accepts it.
        await ex.DriverCall(jumpstarter_pb2.DriverCallRequest(uuid=power.replace("-", ""), method="off"))

        # StreamingDriverCall: two items, each with a fresh uuid.
        items = [i async for i in ex.StreamingDriverCall(
            jumpstarter_pb2.StreamingDriverCallRequest(uuid=power, method="read"))]
        check(len(items) == 2, f"{len(items)} readings")
        check(items[1].result.struct_value.fields["voltage"].number_value == 5.0, "second reading")
        out["streaming_unknown"] = await expect_code(grpc.StatusCode.NOT_FOUND, _drain(ex.StreamingDriverCall(
            jumpstarter_pb2.StreamingDriverCallRequest(uuid=power, method="nosuch"))))

        # LogStream: the driver's "power on" arrives with source DRIVER.
        logs = ex.LogStream(empty_pb2.Empty())
        found = None
        async def read_logs():
            nonlocal found
            async for rec in logs:
                if rec.message == "power on":
                    found = rec
                    return
        await asyncio.wait_for(read_logs(), 10)
        logs.cancel()
        check(found.severity == "INFO" and found.source == common_pb2.LOG_SOURCE_DRIVER and found.uuid == "",
              f"log record {found}")

        # Reset resets the drivers (upstream answers UNIMPLEMENTED; no client calls it).
        await ex.Reset(jumpstarter_pb2.ResetRequest())

        # Stream metadata errors surface on the first read.
        out["stream_no_metadata"] = await expect_code(grpc.StatusCode.UNKNOWN, _first(rt.Stream(iter(()))))
        req = json.dumps({"kind": "driver", "uuid": power, "method": "nosuch"})
        out["stream_unknown_method"] = await expect_code(
            grpc.StatusCode.NOT_FOUND, _first(rt.Stream(iter(()), metadata=(("request", req),))))
        req = json.dumps({"kind": "driver", "uuid": power, "method": "on"})
        out["stream_wrong_kind"] = await expect_code(
            grpc.StatusCode.NOT_FOUND, _first(rt.Stream(iter(()), metadata=(("request", req),))))

        # A driver stream: headers first, then DATA; GOAWAY ends each direction; PING and RST
        # frames are ignored.
        echo = by_name["echo"].uuid
        q = asyncio.Queue()
        call = rt.Stream(_queue_iter(q), metadata=(("request", json.dumps(
            {"kind": "driver", "uuid": echo, "method": "connect"})),))
        await call.initial_metadata()
        await q.put(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_PING))
        await q.put(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_RST_STREAM))
        await q.put(router_pb2.StreamRequest(payload=b"abc"))
        await q.put(router_pb2.StreamRequest(frame_type=router_pb2.FRAME_TYPE_GOAWAY))
        got = b""
        goaway = False
        async for frame in call:
            if frame.frame_type == router_pb2.FRAME_TYPE_GOAWAY:
                goaway = True
                break
            got += frame.payload
        check(got == b"abc" and goaway, f"echo frames {got!r} goaway={goaway}")
        await q.put(None)
        call.cancel()

        # The session still serves after all of the above.
        await ex.DriverCall(jumpstarter_pb2.DriverCallRequest(uuid=power, method="off"))
    out["ok"] = True
    print(json.dumps(out))


async def _drain(call):
    async for _ in call:
        pass


async def _first(call):
    async for _ in call:
        break


async def _queue_iter(q):
    while True:
        item = await q.get()
        if item is None:
            return
        yield item


asyncio.run(main())
