"""A driver type our exporter does not build in, grouping upstream's MockPower and EchoNetwork,
so the pyhost benchmark measures them through the Python driver host (ours) and in upstream's
own exporter (upstream)."""

from dataclasses import dataclass

from jumpstarter.driver import Driver
from jumpstarter_driver_composite.driver import CompositeInterface


@dataclass(kw_only=True)
class Group(CompositeInterface, Driver):
    pass
