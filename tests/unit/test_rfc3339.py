"""``parse_rfc3339``: RFC 3339's date-time (section 5.6) and nothing else of ISO 8601, which
``datetime.fromisoformat`` also reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from router_service.api.schemas import parse_rfc3339


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-01-01T12:00:00Z", datetime(2026, 1, 1, 12, tzinfo=UTC)),
        ("2026-01-01t12:00:00z", datetime(2026, 1, 1, 12, tzinfo=UTC)),  # lower case allowed
        ("2026-01-01T12:00:00.5+01:00", datetime(2026, 1, 1, 11, 0, 0, 500000, tzinfo=UTC)),
        ("2026-01-01T12:00:00.1234567-05:30", datetime(2026, 1, 1, 17, 30, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_date_times_are_read_in_utc(text: str, moment: datetime) -> None:
    assert parse_rfc3339(text) == moment


@pytest.mark.parametrize(
    "text",
    [
        "2020-W01-1T00:00:00Z",  # an ISO week date
        "20200101T000000Z",  # ISO 8601's basic format
        "2020-01-01T00:00:00+00:00:30",  # an offset with seconds
        "2020-01-01T00:00Z",  # no seconds
        "2020-01-01T00:00:00+0000",  # an offset without its colon
        "2020-01-01T00:00:00,5Z",  # a decimal comma
        "2020-01-01 00:00:00Z",  # no T
        "2020-01-01T00:00:00",  # no offset
        "\uff12\uff10\uff12\uff10-01-01T00:00:00Z",  # digits of another script
    ],
)
def test_other_iso_8601_spellings_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339(text)


def test_a_date_that_does_not_exist_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"not a valid date-time: month must be in 1\.\.12"):
        parse_rfc3339("2026-13-01T00:00:00Z")
