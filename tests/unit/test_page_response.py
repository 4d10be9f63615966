"""A page's answer is written item by item: the same JSON as the page written whole, and an
integer past 64 bits (which orjson refuses) sends only its own item to the standard library."""

from __future__ import annotations

import json

from router_service.api.routes import page_response


def test_a_page_is_the_json_of_its_items_and_cursor_exact_for_huge_integers() -> None:
    items = [
        {"log_id": "a", "payload": {"n": 1, "text": "é\u2028"}},
        {"log_id": "b", "payload": {"n": 123456789012345678901234567890}},
        {"log_id": "c", "payload": {"x": [1.5, None, True]}},
    ]
    for cursor in ("next-page", None):
        answer = page_response(items, cursor)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert json.loads(answer.body) == {"items": items, "next_cursor": cursor}


def test_an_empty_page() -> None:
    assert json.loads(page_response([], None).body) == {"items": [], "next_cursor": None}
