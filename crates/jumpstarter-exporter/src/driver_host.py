"""jumpstarter-rs Python driver host.

Serves a subtree of an exporter config with the upstream `jumpstarter` library installed in
this interpreter, following the driver host contract (docs/driver-hosts.md):

    python driver_host.py SOCKET CONFIG

CONFIG is a JSON (hence YAML) file `{"export": {NAME: NODE}}` where NODE uses the exporter
config's node syntax (type/config/children/description/methods_description, or ref). The
tree (a composite root holding NAME) is built with upstream's own code, reset, and served as
ExporterService + RouterService on the unix socket SOCKET, accepting calls at once. The host
runs until its stdin reaches end of file or it gets SIGTERM/SIGINT, then closes the drivers
and exits 0. Before serving, any failure is one line starting with "error: " on stderr and a
non-zero exit: 3 = no usable jumpstarter library, 4 = a driver package is missing,
5 = a driver could not be built from its config, 2 = bad invocation or config.
"""

import json
import os
import signal
import sys
import threading


def fail(code, message):
    sys.stderr.write("error: " + " ".join(str(message).split("\n")) + "\n")
    sys.stderr.flush()
    os._exit(code)


def pip_hint(module):
    top = module.split(".")[0]
    dist = top.replace("_", "-")
    pin = ""
    if top.startswith("jumpstarter_driver_"):
        try:
            from importlib.metadata import version

            pin = "==" + version("jumpstarter")
        except Exception:
            pass
    return "install it with: %s -m pip install '%s%s'" % (sys.executable, dist, pin)


def needed(export):
    """The pip requirements of a subtree: the library and each type's package."""
    types = []
    for name, node in export.items():
        walk_types(name, node, types)
    reqs = ["jumpstarter==0.9.0"]
    for _, type_name in types:
        top = type_name.split(".")[0]
        req = top.replace("_", "-") + ("==0.9.0" if top.startswith("jumpstarter_driver_") else "")
        if req not in reqs:
            reqs.append(req)
    return " ".join("'%s'" % r for r in reqs)


def walk_types(name, node, out):
    if not isinstance(node, dict):
        fail(2, "node `%s` is not a mapping" % name)
    if "type" in node:
        out.append((name, node["type"]))
    for child, sub in (node.get("children") or {}).items():
        walk_types(name + "." + child, sub, out)


def check_imports(export):
    """Imports every driver class first, so a missing package is named clearly."""
    from importlib import import_module

    types = []
    for name, node in export.items():
        walk_types(name, node, types)
    for path, type_name in types:
        module_name, _, class_name = type_name.rpartition(".")
        if not module_name:
            fail(2, "driver `%s`: type `%s` is not a Python class path (module.Class)" % (path, type_name))
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as e:
            missing = e.name or module_name
            fail(
                4,
                "driver `%s` (type `%s`): Python package `%s` is not installed in %s; %s"
                % (path, type_name, missing.split(".")[0], sys.executable, pip_hint(missing)),
            )
        except Exception as e:
            fail(5, "driver `%s` (type `%s`): importing `%s` failed: %s: %s"
                 % (path, type_name, module_name, type(e).__name__, e))
        if not hasattr(module, class_name):
            fail(4, "driver `%s`: module `%s` has no class `%s` (is the installed version the right one?)"
                 % (path, module_name, class_name))


def main():
    if len(sys.argv) != 3:
        fail(2, "usage: %s SOCKET CONFIG" % sys.argv[0])
    socket_path, config_path = sys.argv[1], sys.argv[2]
    try:
        with open(config_path) as f:
            export = json.load(f)["export"]
    except Exception as e:
        fail(2, "cannot read the host config %s: %s" % (config_path, e))
    try:
        import anyio
        from jumpstarter.common import ExporterStatus
        from jumpstarter.config.exporter import ExporterConfigV1Alpha1DriverInstance
        from jumpstarter.exporter import Session
    except ImportError as e:
        fail(
            3,
            "the Python at %s cannot load the upstream jumpstarter library (%s); "
            "install it with: %s -m pip install %s" % (sys.executable, e, sys.executable, needed(export)),
        )

    check_imports(export)
    try:
        root = ExporterConfigV1Alpha1DriverInstance.model_validate(
            {"type": "jumpstarter_driver_composite.driver.Composite", "children": export}
        ).instantiate()
    except Exception as e:
        fail(5, "building the drivers failed: %s: %s" % (type(e).__name__, e))

    stop = threading.Event()

    def on_signal(*_):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(65536):
                pass
        except Exception:
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    async def serve():
        # Session() resets the drivers when entered and closes them when left.
        try:
            session_cm = Session(root_device=root)
            session = session_cm.__enter__()
        except Exception as e:
            fail(5, "starting the drivers failed: %s: %s" % (type(e).__name__, e))
        try:
            async with session.serve_port_async("unix://" + socket_path):
                session.update_status(ExporterStatus.LEASE_READY)
                while not stop.is_set():
                    await anyio.sleep(0.05)
        finally:
            session_cm.__exit__(None, None, None)

    anyio.run(serve)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
