"""Compares our .proto files (a FileDescriptorSet, argv[1]) with upstream's 0.9.0 descriptors.

Everything that decides the wire must match: packages, message names, field names, numbers,
types, labels, explicit presence (proto3 optional), message/enum type references, enum values,
service and method names with their request/response types and streaming flags.
Prints the differences and exits 1 if there are any.
"""

import sys

from google.protobuf import descriptor_pb2
from jumpstarter_protocol.jumpstarter.client.v1 import client_pb2
from jumpstarter_protocol.jumpstarter.v1 import common_pb2, jumpstarter_pb2, kubernetes_pb2, router_pb2

PACKAGES = ("jumpstarter.v1", "jumpstarter.client.v1")

# Fields we carry on purpose although 0.9.0 lacks them: each was added by upstream after 0.9.0
# with exactly this name, number and type, and 0.9.0 peers skip unknown fields. Any other extra
# field, or one of these with a different shape, is still a difference.
FORWARD_COMPATIBLE = {
    # GetReportResponse.motd (upstream main): message of the day, appended to by hooks.
    ("message jumpstarter.v1.GetReportResponse", 5): ("motd", 9, 1, "", False),
}


def summarize(files):
    out = {}
    for f in files:
        if f.package not in PACKAGES:
            continue
        for m in f.message_type:
            name = f"{f.package}.{m.name}"
            fields = {}
            for fd in m.field:
                fields[fd.number] = (fd.name, fd.type, fd.label, fd.type_name, fd.proto3_optional)
            out[f"message {name}"] = fields
            for nested in m.nested_type:
                if nested.options.map_entry:
                    out[f"map {name}.{nested.name}"] = {fd.number: (fd.name, fd.type) for fd in nested.field}
        for e in f.enum_type:
            out[f"enum {f.package}.{e.name}"] = {v.name: v.number for v in e.value}
        for s in f.service:
            out[f"service {f.package}.{s.name}"] = {
                m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in s.method
            }
    return out


def upstream():
    files = []
    for mod in (common_pb2, kubernetes_pb2, router_pb2, jumpstarter_pb2, client_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)
        files.append(fdp)
    return summarize(files)


def ours(path):
    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        fds.ParseFromString(f.read())
    return summarize(fds.file)


theirs, mine = upstream(), ours(sys.argv[1])
diffs = []
for (key, number), shape in FORWARD_COMPATIBLE.items():
    fields = mine.get(key, {})
    if fields.get(number) != shape:
        diffs.append(f"forward-compatible field missing or changed: {key} #{number}: {fields.get(number)}")
    elif number in theirs.get(key, {}):
        diffs.append(f"forward-compatible field now upstream, drop it from the list: {key} #{number}")
    else:
        del fields[number]
        print(f"allowed forward-compatible field: {key} #{number} {shape[0]}")
for key in sorted(set(theirs) | set(mine)):
    if key not in mine:
        diffs.append(f"missing in ours: {key}")
    elif key not in theirs:
        diffs.append(f"extra in ours: {key}")
    elif theirs[key] != mine[key]:
        diffs.append(f"differs: {key}\n  upstream: {theirs[key]}\n  ours:     {mine[key]}")
for d in diffs:
    print(d)
print(f"compared {len(theirs)} definitions, {len(diffs)} differences")
sys.exit(1 if diffs else 0)
