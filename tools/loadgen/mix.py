"""What the load generator sends, and when: a realistic, reproducible signal mix (with client
retries as duplicates) and the open loop's schedule. Pure: tested without an event loop."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

# (kind, relative weight): the intended kind of each generated signal.
KIND_WEIGHTS: Final = (
    ("policy", 15),
    ("billing", 25),
    ("support", 25),
    ("emergency", 5),
    ("feedback", 15),
    ("unclassified", 15),
)
# Neutral filler: none of these words should decide a classification on its own.
_WORDS: Final = (
    *("account", "order", "delivery", "region", "customer", "service", "update", "team"),
    *("status", "network", "portal", "system", "report", "review", "contract", "schedule"),
    *("document", "process", "weekly", "data", "warehouse", "shipment", "profile", "settings"),
    *("mobile", "desktop", "quarter", "morning", "store", "colleague", "device", "version"),
)


def open_loop_schedule(n: int, rate: float) -> list[float]:
    """Intended send offsets in seconds from the start: evenly spaced at ``rate`` per second."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive finite number, got {rate}")
    return [i / rate for i in range(n)]


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request body; ``duplicate_of`` is the index of the original it resends."""

    index: int
    kind: str
    body: dict[str, Any]
    duplicate_of: int | None = None

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of is not None


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def _text_size(rng: random.Random) -> int:
    """Mostly short messages, some paragraphs, a few attachments-worth of text."""
    roll = rng.random()
    if roll < 0.70:
        return rng.randint(20, 300)
    if roll < 0.95:
        return rng.randint(300, 1500)
    return rng.randint(1500, 6000)


def _payload(kind: str, rng: random.Random) -> dict[str, Any]:
    filler = _text(rng, _text_size(rng))
    if kind == "policy":
        ref = f"POL-{rng.randint(100, 999)}"
        return {"message": f"Question about policy {ref}: {filler}", "policy_id": ref}
    if kind == "billing":
        invoice = f"INV-{rng.randint(2023, 2026)}-{rng.randint(1, 99999):05d}"
        amount = round(rng.uniform(5, 5000), 2)
        return {
            "message": f"Invoice {invoice} was charged twice. {filler}",
            "invoice_number": invoice,
            "amount": amount,
            "currency": rng.choice(["EUR", "USD", "GBP"]),
        }
    if kind == "support":
        return {"message": f"I need help: cannot log in to my account. {filler}", "channel": "web"}
    if kind == "emergency":
        site = rng.choice(["plant-3", "dc-east", "store-112", "hq"])
        return {"message": f"URGENT emergency at {site}: {filler}", "severity": "critical"}
    if kind == "feedback":
        return {"message": f"Feedback: {filler}", "rating": rng.randint(1, 5)}
    return {"note": filler, "ref": rng.randint(1, 10**6)}


def signal_mix(
    n: int,
    *,
    seed: int,
    duplicates: float = 0.05,
    run_id: str = "run",
    senders: int = 50,
    start: datetime | None = None,
) -> list[PlannedRequest]:
    """``n`` request bodies, the same for the same arguments.

    Exactly ``round(n * duplicates)`` of them (never the first) resend an earlier original
    byte for byte, explicit ``log_id`` included, as a client retry would.
    """
    if not 0 <= duplicates < 1:
        raise ValueError(f"duplicates must be in [0, 1), got {duplicates}")
    rng = random.Random(seed)
    base = start or datetime(2025, 1, 1, tzinfo=UTC)
    duplicate_slots = set(rng.sample(range(1, n), min(round(n * duplicates), max(n - 1, 0))))
    kinds, weights = [k for k, _ in KIND_WEIGHTS], [w for _, w in KIND_WEIGHTS]
    originals: list[int] = []
    plan: list[PlannedRequest] = []
    for index in range(n):
        if index in duplicate_slots:
            source = plan[rng.choice(originals)]
            plan.append(PlannedRequest(index, source.kind, source.body, source.index))
            continue
        kind = rng.choices(kinds, weights)[0]
        moment = base + timedelta(microseconds=index)
        body = {
            "log_id": f"load-{run_id}-{index:07d}",
            "sender_id": f"sender-{rng.randrange(senders):03d}",
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "payload": _payload(kind, rng),
            "metadata": {"source": "loadgen", "run_id": run_id, "seq": index},
        }
        originals.append(index)
        plan.append(PlannedRequest(index, kind, body))
    return plan
