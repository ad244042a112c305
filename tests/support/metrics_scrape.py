"""A scrape of a server's /metrics, parsed with prometheus_client's text parser: the
value of a sample by name and labels, and the difference between two scrapes."""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

WAIT = 10.0

# What a family of each type exposes besides its own name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": (),
}


@dataclass
class Scrape:
    """One scrape of /metrics: sample values by (name, labels)."""

    samples: list[tuple[str, dict[str, str], float]]
    names: set[str]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called `name` whose labels include `labels` (0 if none)."""
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and labels.items() <= sample_labels.items()
        )


def parse(text: str) -> Scrape:
    samples: list[tuple[str, dict[str, str], float]] = []
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        for sample in family.samples:
            names.add(sample.name)
            samples.append((sample.name, dict(sample.labels), sample.value))
    return Scrape(samples, names)


async def scrape(url: str) -> Scrape:
    """GET /metrics on a thread: the scrape runs while the server's loop keeps going, as
    it does under a real Prometheus."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return str(response.read().decode())

    return parse(await asyncio.to_thread(get))


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)
