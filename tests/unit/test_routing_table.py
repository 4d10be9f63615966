"""RoutingTable.plan: kind -> agents and mode, with the default route as the fallback."""

from __future__ import annotations

import pytest

from router_service.domain.routing import DEFAULT_KIND, AgentSpec, Mode, Plan, Route, RoutingTable

AGENTS = {
    name: AgentSpec(name, f"http://127.0.0.1:9100/agents/{name}")
    for name in ("oncall-agent", "support-agent", "general-agent")
}
TABLE = RoutingTable(
    agents=AGENTS,
    routes={
        "emergency": Route("emergency", ("oncall-agent", "support-agent"), Mode.AGGREGATE),
        DEFAULT_KIND: Route(DEFAULT_KIND, ("general-agent",), Mode.FALLBACK),
    },
)


def test_plan_for_a_routed_kind_resolves_agents_in_order() -> None:
    plan = TABLE.plan("emergency", "emergency-keywords")
    assert plan == Plan(
        kind="emergency",
        rule="emergency-keywords",
        mode=Mode.AGGREGATE,
        agents=(AGENTS["oncall-agent"], AGENTS["support-agent"]),
    )
    assert plan.agent_names == ["oncall-agent", "support-agent"]


def test_a_kind_without_a_route_uses_the_default_route_but_keeps_its_kind() -> None:
    plan = TABLE.plan("billing", "billing-keywords")
    assert plan.kind == "billing"
    assert plan.rule == "billing-keywords"
    assert plan.mode is Mode.FALLBACK
    assert plan.agent_names == ["general-agent"]


def test_the_default_kind_plans_the_default_route() -> None:
    assert TABLE.plan(DEFAULT_KIND, "default").agent_names == ["general-agent"]
    assert TABLE.route_for("anything") is TABLE.routes[DEFAULT_KIND]


@pytest.mark.parametrize("mode", list(Mode))
def test_mode_override_wins_over_the_route(mode: Mode) -> None:
    plan = TABLE.plan("emergency", "r", mode=mode)
    assert plan.mode is mode
    assert plan.agent_names == ["oncall-agent", "support-agent"]


def test_no_override_keeps_the_route_mode() -> None:
    assert TABLE.plan("emergency", "r", mode=None).mode is Mode.AGGREGATE


def test_plan_carries_agent_timeouts() -> None:
    slow = AgentSpec("slow", "http://x/slow", timeout_s=2.5)
    table = RoutingTable(
        agents={"slow": slow},
        routes={DEFAULT_KIND: Route(DEFAULT_KIND, ("slow",), Mode.FIRST_SUCCESS)},
    )
    assert table.plan("x", "r").agents == (slow,)
    assert table.plan("x", "r").agents[0].timeout_s == 2.5


def test_plans_are_frozen() -> None:
    plan = TABLE.plan("emergency", "r")
    with pytest.raises(AttributeError):
        plan.kind = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:9100/agents/a", "http://127.0.0.1:9100/agents/a"),
        ("https://ops:s3cret@agents.example/hook", "https://ops:***@agents.example/hook"),
        ("https://ops@agents.example/hook", "https://ops@agents.example/hook"),
        (
            "https://h.example/hook?token=abc&v=2&flag",
            "https://h.example/hook?token=***&v=***&flag",
        ),
        ("https://u:p@w@h.example:8443/x?k=v", "https://u:***@h.example:8443/x?k=***"),
    ],
)
def test_an_agents_url_is_shown_without_its_password_and_query_values(url: str, shown: str) -> None:
    assert AgentSpec("a", url).shown_url == shown
