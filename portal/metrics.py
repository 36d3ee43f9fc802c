"""Prometheus metrics, read from the server's state at scrape time (nothing counts per event)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tessera.conference.api import Conference
from tessera.conference.stats import AudioCounters, RungCounters, ViewCounters

from .looplag import LoopLagMonitor


class TesseraCollector(Collector):
    """Rooms, participants, sessions, views, encoders, recordings and the event loop."""

    def __init__(
        self,
        conference: Conference,
        loop_lag: LoopLagMonitor,
        connections: Callable[[], int] | None = None,
    ) -> None:
        self.conference = conference
        self.loop_lag = loop_lag
        self.connections = connections  # a front end's client connections (an agent: none)
        # Last (time, frames) per view, for the achieved frame rate between scrapes.
        self._last: dict[str, tuple[float, int]] = {}

    def collect(self) -> Iterator[Metric]:
        counts = self.conference.counters()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("tessera_rooms", "Rooms loaded (with participants)", counts.rooms)
        if self.connections is not None:
            yield gauge(
                "tessera_connections", "Socket.IO connections to this portal", self.connections()
            )
        yield gauge("tessera_participants", "Logged-in participants", counts.participants)
        yield gauge("tessera_publications", "Publications (forward streams)", counts.publications)
        yield gauge("tessera_subscriptions", "Subscriptions", counts.subscriptions)
        yield gauge("tessera_views", "Views (mixed streams)", counts.views)
        yield gauge("tessera_views_running", "Views compositing or mixing", counts.views_running)
        yield gauge(
            "tessera_encoders",
            "Video encoders: one per view output format, one per forward transcode",
            counts.encoders,
        )
        family = GaugeMetricFamily(
            "tessera_transports", "Peer connections by state", labels=["state"]
        )
        for state in ("new", "connecting", "connected", "disconnected", "failed", "closed"):
            family.add_metric([state], counts.transports.get(state, 0))
        yield family
        family = GaugeMetricFamily(
            "tessera_recordings", "Recordings of this run by state", labels=["state"]
        )
        for state in ("recording", "stopped", "failed"):
            family.add_metric([state], counts.recordings.get(state, 0))
        yield family
        family = GaugeMetricFamily(
            "tessera_streaming_outs", "Streaming-outs of this run by state", labels=["state"]
        )
        for state in ("connecting", "streaming", "stopped", "failed"):
            family.add_metric([state], counts.streaming_outs.get(state, 0))
        yield family
        lag = GaugeMetricFamily(
            "tessera_event_loop_lag_seconds",
            "How late the event loop runs timers",
            labels=["quantile"],
        )
        for q in (50, 99):
            lag.add_metric([f"0.{q}"], self.loop_lag.percentile(q))
        yield lag
        # What a leak would grow: tasks on the loop (scraped on the loop's own thread) and threads.
        yield gauge("tessera_event_loop_tasks", "Tasks on the event loop", len(asyncio.all_tasks()))
        yield gauge("tessera_threads", "Threads of the process", threading.active_count())
        yield from self._views(counts.view_counters)
        yield from self._rungs(counts.rung_counters)
        yield from self._audio(counts.view_counters, counts.audio_counters)

    def _views(self, views: list[ViewCounters]) -> Iterator[Metric]:
        labels = ["view"]
        fps = GaugeMetricFamily(
            "tessera_view_fps", "Achieved output frame rate of a view", labels=labels
        )
        frames = CounterMetricFamily("tessera_view_frames", "Frames composited", labels=labels)
        dropped = CounterMetricFamily("tessera_view_dropped_frames", "Ticks skipped", labels=labels)
        composite = CounterMetricFamily(
            "tessera_view_composite_seconds", "CPU seconds compositing", labels=labels
        )
        encode = CounterMetricFamily(
            "tessera_view_encode_seconds", "CPU seconds scaling and encoding outputs", labels=labels
        )
        inputs = CounterMetricFamily(
            "tessera_view_input_frames",
            "Decoded video frames the view's inputs delivered (all inputs)",
            labels=labels,
        )
        now = time.monotonic()
        seen = set()
        for view in views:
            seen.add(view.id)
            last_time, last_frames = self._last.get(view.id, (view.started, 0))
            elapsed = now - last_time
            rate = (view.frames - last_frames) / elapsed if elapsed > 0 and view.running else 0.0
            self._last[view.id] = (now, view.frames)
            fps.add_metric([view.id], rate)
            frames.add_metric([view.id], view.frames)
            dropped.add_metric([view.id], view.dropped)
            composite.add_metric([view.id], view.composite_seconds)
            encode.add_metric([view.id], view.encode_seconds)
            inputs.add_metric([view.id], view.input_frames)
        for gone in set(self._last) - seen:
            del self._last[gone]
        yield from (fps, frames, dropped, composite, encode, inputs)

    def _rungs(self, rungs: list[RungCounters]) -> Iterator[Metric]:
        labels = ["view", "rung", "resolution"]
        subscribers = GaugeMetricFamily(
            "tessera_adaptive_subscribers",
            "Subscribers adapted by their bandwidth, per view and rung of its ladder",
            labels=labels,
        )
        switches = GaugeMetricFamily(
            "tessera_adaptive_rung_switches",
            "Rung switches so far of the subscribers now on the rung",
            labels=labels,
        )
        for rung in rungs:
            key = [rung.view, str(rung.rung), rung.resolution]
            subscribers.add_metric(key, rung.subscribers)
            switches.add_metric(key, rung.switches)
        yield from (subscribers, switches)

    def _audio(self, views: list[ViewCounters], audio: list[AudioCounters]) -> Iterator[Metric]:
        fec_seconds = CounterMetricFamily(
            "tessera_view_audio_fec_encode_seconds",
            "CPU seconds of the full mix's second Opus encode, with in-band FEC",
            labels=["view"],
        )
        for view in views:
            fec_seconds.add_metric([view.id], view.fec_encode_seconds)
        subscribers = GaugeMetricFamily(
            "tessera_audio_subscribers",
            "Subscribers of a view's audio per encoding (opus+fec: in-band FEC, lossy link)",
            labels=["view", "encoding"],
        )
        switches = GaugeMetricFamily(
            "tessera_audio_fec_switches",
            "FEC switches so far of the subscribers now on the encoding",
            labels=["view", "encoding"],
        )
        for counters in audio:
            key = [counters.view, counters.encoding]
            subscribers.add_metric(key, counters.subscribers)
            switches.add_metric(key, counters.switches)
        yield from (fec_seconds, subscribers, switches)


def create_registry(
    conference: Conference,
    loop_lag: LoopLagMonitor,
    connections: Callable[[], int] | None = None,
) -> CollectorRegistry:
    """A registry of the server's own metrics plus process CPU/memory, GC and platform."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(TesseraCollector(conference, loop_lag, connections))
    return registry
