"""Upstream Jumpstarter 0.9.0's ShellClient against the Shell driver `sh` behind JUMPSTARTER_HOST.

Run inside `jmp shell --exporter-config <shell config> -- python shell_client.py` (our exporter
or upstream's). Calls methods the way test code does (`client.sh.<method>(*args, **env)`),
captures what the client prints and returns, collects error classes and messages, and prints
a JSON summary as its last line so the calling test can compare exporters.
"""

import contextlib
import io
import json
import sys

from jumpstarter.client.core import DriverError, DriverInvalidArgument
from jumpstarter.utils.env import env


def capture(fn, *args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = fn(*args, **kwargs)
    return {"rc": rc, "rc_type": type(rc).__name__, "stdout": out.getvalue(), "stderr": err.getvalue()}


def error_of(fn):
    try:
        fn()
    except DriverInvalidArgument as e:
        return {"class": "DriverInvalidArgument", "is_value_error": isinstance(e, ValueError), "message": str(e)}
    except DriverError as e:
        return {"class": type(e).__name__, "message": str(e)}
    except AttributeError as e:
        return {"class": "AttributeError", "message": str(e)}
    return None


summary = {}
with env() as client:
    sh = client.sh
    summary["client_class"] = type(sh).__name__
    summary["methods"] = list(sh.call("get_methods"))
    summary["methods_description"] = dict(sh.methods_description)
    summary["hello"] = capture(sh.hello, "world")
    summary["show"] = capture(sh.show, "a b", "-x", FOO="1", BAR="x y")
    summary["code"] = capture(sh.code, "3")
    summary["both"] = capture(sh.both)
    summary["utf8"] = capture(sh.utf8)
    summary["slow"] = capture(sh.slow)

    summary["unknown_attribute"] = error_of(lambda: sh.nosuch)
    summary["unknown_method"] = error_of(lambda: list(sh.streamingcall("call_method", "nosuch", {})))
    summary["non_string_arg"] = error_of(lambda: list(sh.streamingcall("call_method", "hello", {}, 1)))
    summary["blocked"] = {
        name: error_of(lambda name=name: sh.hello(**{name: "x"}))
        for name in ["PATH", "HOME", "LD_PRELOAD", "LD_X", "BASH_ENV", "BASH_FUNC_x", "PYTHONPATH", "KUBECONFIG"]
    }
    summary["invalid_names"] = {
        name: error_of(lambda name=name: sh.hello(**{name: "x"})) for name in ["1X", "A-B", "A B", ""]
    }

    items = list(sh.streamingcall("call_method", "both", {}))
    summary["items"] = {
        "all_triples": all(isinstance(i, list) and len(i) == 3 for i in items),
        "null_codes_before_last": all(i[2] is None for i in items[:-1]),
        "last_code": items[-1][2],
        "last_code_type": type(items[-1][2]).__name__,
        "stdout": "".join(i[0] for i in items),
        "stderr": "".join(i[1] for i in items),
    }

print(json.dumps(summary, sort_keys=True))
sys.stdout.flush()
