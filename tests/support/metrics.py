"""Reading a router's /metrics the way a test asserts on it: one sample, or a sum."""

from __future__ import annotations

import httpx


def metric(client: httpx.Client, name: str) -> float:
    """The sum of every sample of ``name`` in /metrics (labels ignored)."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def sample(client: httpx.Client, name: str, **labels: str) -> float:
    """The sample of ``name`` with exactly ``labels`` (in the order the metric declares them),
    0 while there is none."""
    shown = ",".join(f'{label}="{value}"' for label, value in labels.items())
    prefix = f"{name}{{{shown}}}"
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
