"""Load generator for ``POST /route``: a realistic signal mix, closed or open loop.

Closed loop (default): ``concurrency`` workers each send the next request as soon as their
previous one is answered, so the offered load adapts to the server.

Open loop (``--rate``): request *i* has the intended send time ``start + i / rate`` whatever the
server does. Latency is measured from that intended time, so a stalled server shows up as the
latency its clients would really see (no coordinated omission). At most ``max_outstanding``
requests are in flight; a request due while that many are pending is counted as ``dropped``.

Only answered requests have a latency: timeouts, connection failures and drops are errors.
The pure parts (percentiles, schedule, signal mix, summary) need no event loop.
"""

from loadgen.mix import KIND_WEIGHTS, PlannedRequest, open_loop_schedule, signal_mix
from loadgen.report import LatencySummary, LoadReport, RequestOutcome, percentile, summarise
from loadgen.run import LoadOptions, route_url, run_load

__all__ = [
    "KIND_WEIGHTS",
    "LatencySummary",
    "LoadOptions",
    "LoadReport",
    "PlannedRequest",
    "RequestOutcome",
    "open_loop_schedule",
    "percentile",
    "route_url",
    "run_load",
    "signal_mix",
    "summarise",
]
