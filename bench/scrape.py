"""Read a running server's /metrics (Prometheus text) into a dict, for the ops benchmarks."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def scrape(url: str) -> dict[str, float]:
    """Every sample of ``url``/metrics, keyed ``name`` or ``name{label="value",...}``."""
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            response.raise_for_status()
            text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def total(samples: dict[str, float], name: str) -> float:
    """The sum of ``name`` over all its labels."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))
