"""Upstream Jumpstarter 0.9.0's PowerClient against HttpPower drivers behind JUMPSTARTER_HOST.

Run inside `jmp shell --exporter-config <config> -- python http_power_client.py`: expects a
driver `power` (on, off and read endpoints) and a driver `noread` (no read endpoint), and
prints a JSON summary as its last line.
"""

import json

from jumpstarter.client.core import DriverError, DriverInvalidArgument
from jumpstarter.utils.env import env
from jumpstarter_driver_power.common import PowerReading


def error_of(fn):
    try:
        fn()
    except DriverInvalidArgument as e:
        return {"class": "DriverInvalidArgument", "message": str(e)}
    except DriverError as e:
        return {"class": type(e).__name__, "message": str(e)}
    return None


summary = {}
with env() as client:
    summary["client_class"] = type(client.power).__name__
    summary["on"] = client.power.on()
    summary["off"] = client.power.off()
    readings = list(client.power.read())
    summary["readings_are_power_readings"] = all(isinstance(r, PowerReading) for r in readings)
    summary["readings"] = [{"voltage": r.voltage, "current": r.current} for r in readings]
    summary["raw"] = list(client.power.streamingcall("read"))
    summary["noread"] = error_of(lambda: list(client.noread.read()))
    summary["failing_on"] = error_of(client.noread.on)

print(json.dumps(summary, sort_keys=True))
