"""deploy/: the Grafana dashboard and the Prometheus alert rules are built only from
metrics the server exposes, and the rules behave as documented (promtool, when
installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.observed_servers import ALERTS, DASHBOARD, METRIC_NAME, Observed

RULE_TESTS = Path(__file__).with_name("prometheus-alerts.test.yaml")


def expressions(node: Any) -> list[str]:
    """Every `expr` anywhere in a dashboard (panels, rows, nested panels)."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}


async def test_dashboard_queries_only_metrics_that_exist(observed: Observed) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = expressions(dashboard)
    assert exprs, "the dashboard queries nothing"
    exposed = (await observed.scrape()).names
    queried: set[str] = set()
    for expr in exprs:
        names = set(METRIC_NAME.findall(expr))
        assert names, f"no buildcontrol metric in {expr!r}"
        queried |= names
    assert queried - exposed == set(), f"queried but not in /metrics: {queried - exposed}"
    # The point of the dashboard: every phase of a cancel and the stuck detector.
    for phase in ("accepted", "stop_delivered", "job_stopped", "terminal"):
        assert f"buildcontrol_cancel_{phase}_seconds_bucket" in queried
    assert "buildcontrol_oldest_canceling_age_seconds" in queried
    assert "buildcontrol_grpc_server_handled_total" in queried


async def test_alert_rules_use_only_metrics_that_exist(observed: Observed) -> None:
    alerts = alert_expressions()
    assert {"BuildcontrolCancelStuck", "BuildcontrolForcedStopsRising",
            "BuildcontrolAgentsLost"} <= set(alerts)  # fmt: skip
    exposed = (await observed.scrape()).names
    for name, expr in alerts.items():
        used = set(METRIC_NAME.findall(expr))
        if name == "BuildcontrolDown":
            # The one rule on a series Prometheus makes itself: the scrape's own `up`.
            assert expr.startswith('up{job="buildcontrol"}'), expr
            continue
        assert used, f"{name} uses no buildcontrol metric"
        assert used <= exposed, f"{name} uses metrics not in /metrics: {used - exposed}"


def test_dashboard_filters_every_query_by_the_instance_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert "instance" in names
    for expr in expressions(dashboard):
        for metric in METRIC_NAME.findall(expr):
            # Every metric selector carries the filter, so one server can be looked at alone.
            assert re.search(rf'{metric}\{{[^}}]*instance=~"\$instance"', expr), (metric, expr)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(RULE_TESTS)]):
        result = subprocess.run(
            ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
