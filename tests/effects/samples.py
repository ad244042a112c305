"""Cancel records and metric readings for the side-effects tests."""

from __future__ import annotations

from dataclasses import replace

from buildcontrol_server.domain.model import CancelRecord
from prometheus_client import REGISTRY

from tests.support.store_samples import T0, canceled, wide_spec


def sample_record(n: int = 0) -> CancelRecord:
    """A cancel record with a unique build id (its build is not in any store)."""
    build, _ = canceled(wide_spec(2, 1), now=T0 + n)
    return replace(CancelRecord.of(build), build_id=f"b{n:020x}")


def delivered(label: str, result: str) -> float:
    sample = REGISTRY.get_sample_value(
        "buildcontrol_webhook_deliveries_total", {"endpoint": label, "result": result}
    )
    return sample or 0.0


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class Deliveries:
    """buildcontrol_webhook_deliveries_total of one endpoint since this was made (an
    ephemeral port, hence a label, may repeat across tests of one process)."""

    RESULTS = (
        "delivered",
        "retried",
        "gave_up",
        "rejected",
        "dropped_queue_full",
        "dropped_breaker_open",
        "dropped_shutdown",
    )

    def __init__(self, label: str) -> None:
        self.label = label
        self._start = {result: delivered(label, result) for result in self.RESULTS}

    def __getitem__(self, result: str) -> float:
        return delivered(self.label, result) - self._start[result]
