"""Dead-letter replays from the console, built on the operations replay jobs
(``service/replay_jobs.py``), the same ones ``POST /dlq/replay`` and ``/dlq/replays`` use.

A console selection becomes a ``DeadLetterFilter``: checked entries (``ids``), or every pending
entry matching the page's ``agent`` and ``kind``. *Preview* is the job dry run; its snapshot
token travels in the preview page's form, so the job started from it handles exactly the
previewed set. This module only reads forms and shapes jobs for the pages: the jobs themselves
are rows in ``replay_jobs``, run, cancelled and resumed by ``ReplayJobs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from router_service.domain.errors import ValidationFailed
from router_service.service.records import DeadLetterFilter, ReplayJobRecord
from router_service.service.replay_jobs import MAX_ENTRY_ID, MAX_IDS, MAX_RATE, MIN_RATE

# ASCII digits only, as the API takes: ``int`` also reads "1_0", "+1" and other scripts' digits.
_ID = re.compile(r"[0-9]{1,19}")
RECENT_JOBS = 10  # jobs listed on the Dead letters page


def selection(form_ids: list[str], agent: str, kind: str) -> DeadLetterFilter:
    """The filter a console form stands for. Ids come as checkboxes or one comma-joined field
    (the preview page's); without ids, the page's filter."""
    if form_ids:
        tokens = [i.strip() for raw in form_ids for i in raw.split(",") if i.strip()]
        if not all(_ID.fullmatch(token) for token in tokens):
            raise ValidationFailed("ids: expected dead-letter ids (digits)")
        ids = tuple(map(int, tokens))
        if not ids:
            raise ValidationFailed("ids: nothing selected")
        if not all(1 <= i <= MAX_ENTRY_ID for i in ids):
            raise ValidationFailed(f"ids: dead-letter ids are between 1 and {MAX_ENTRY_ID}")
        if len(ids) > MAX_IDS:
            raise ValidationFailed(f"ids: at most {MAX_IDS} at once; select by filter instead")
        return DeadLetterFilter(ids=ids)
    return DeadLetterFilter(agent=agent or None, kind=kind or None)


def rate(text: str) -> float:
    try:
        value = float(text or "10")
    except ValueError as exc:
        raise ValidationFailed("rate: expected entries per second") from exc
    if not MIN_RATE <= value <= MAX_RATE:  # the API's and the CLI's bounds
        raise ValidationFailed(f"rate: between {MIN_RATE:g} and {MAX_RATE:g} entries per second")
    return value


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as its page shows it: the stored row, and what an operator may do with it."""

    job: ReplayJobRecord

    @property
    def shown_state(self) -> str:
        # A cancel asked of a running job takes effect after the entry in hand.
        if self.job.state == "running" and self.job.cancel_requested:
            return "cancelling"
        return self.job.state

    @property
    def active(self) -> bool:
        return self.job.state == "running"

    @property
    def cancellable(self) -> bool:
        return self.job.state == "running" and not self.job.cancel_requested

    @property
    def resumable(self) -> bool:
        return self.job.state in ("cancelled", "failed")

    @property
    def selection(self) -> str:
        """The filter in words (without its snapshot bound, shown apart)."""
        shown = {k: v for k, v in self.job.filter.as_dict().items() if k != "upto_id"}
        if "ids" in shown and len(shown["ids"]) > 20:
            shown["ids"] = f"{len(shown['ids'])} ids"
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or "every pending entry"
