"""Prometheus metrics, read from the server's state at scrape time (nothing counts per event)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tessera.webrtc_agent.forwardstream import ForwardStream

if TYPE_CHECKING:
    from tessera.mixer.mixedstream import MixedStream

    from .server import Server


class TesseraCollector(Collector):
    """Rooms, participants, sessions, views, encoders, recordings and the event loop."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # Last (time, frames) per view, for the achieved frame rate between scrapes.
        self._last: dict[str, tuple[float, int]] = {}

    def collect(self) -> Iterator[Metric]:
        server = self.server
        rooms = list(server.rooms.values())
        participants = [p for r in rooms for p in r.participants.values()]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("tessera_rooms", "Rooms loaded (with participants)", len(rooms))
        yield gauge("tessera_participants", "Logged-in participants", len(participants))
        yield gauge(
            "tessera_publications",
            "Publications (forward streams)",
            sum(len(p.publications) for p in participants),
        )
        yield gauge(
            "tessera_subscriptions",
            "Subscriptions",
            sum(len(p.subscriptions) for p in participants),
        )
        views = [v for r in rooms for v in r.views.values()]
        yield gauge("tessera_views", "Views (mixed streams)", len(views))
        yield gauge(
            "tessera_views_running", "Views compositing or mixing", sum(v.running for v in views)
        )
        transcoders = sum(
            len(s.transcoders)
            for r in rooms
            for s in r.streams.values()
            if isinstance(s, ForwardStream)
        )
        yield gauge(
            "tessera_encoders",
            "Video encoders: one per view output format, one per forward transcode",
            sum(len(v.video_outputs) for v in views) + transcoders,
        )
        states = Counter(t.pc.connectionState for t in server.agent.transports.values())
        family = GaugeMetricFamily(
            "tessera_transports", "Peer connections by state", labels=["state"]
        )
        for state in ("new", "connecting", "connected", "disconnected", "failed", "closed"):
            family.add_metric([state], states.get(state, 0))
        yield family
        recording_states = Counter(r.state for _, _, r in server.recordings.values())
        family = GaugeMetricFamily(
            "tessera_recordings", "Recordings of this run by state", labels=["state"]
        )
        for state in ("recording", "stopped", "failed"):
            family.add_metric([state], recording_states.get(state, 0))
        yield family
        out_states = Counter(o.state for _, _, o in server.streaming_outs.values())
        family = GaugeMetricFamily(
            "tessera_streaming_outs", "Streaming-outs of this run by state", labels=["state"]
        )
        for state in ("connecting", "streaming", "stopped", "failed"):
            family.add_metric([state], out_states.get(state, 0))
        yield family
        lag = GaugeMetricFamily(
            "tessera_event_loop_lag_seconds",
            "How late the event loop runs timers",
            labels=["quantile"],
        )
        for q in (50, 99):
            lag.add_metric([f"0.{q}"], server.loop_lag.percentile(q))
        yield lag
        # What a leak would grow: tasks on the loop (scraped on the loop's own thread) and threads.
        yield gauge("tessera_event_loop_tasks", "Tasks on the event loop", len(asyncio.all_tasks()))
        yield gauge("tessera_threads", "Threads of the process", threading.active_count())
        yield from self._views(views)

    def _views(self, views: list[MixedStream]) -> Iterator[Metric]:
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
        now = time.monotonic()
        seen = set()
        for view in views:
            seen.add(view.id)
            stats = view.stats
            last_time, last_frames = self._last.get(view.id, (stats.started, 0))
            elapsed = now - last_time
            rate = (stats.frames - last_frames) / elapsed if elapsed > 0 and view.running else 0.0
            self._last[view.id] = (now, stats.frames)
            fps.add_metric([view.id], rate)
            frames.add_metric([view.id], stats.frames)
            dropped.add_metric([view.id], stats.dropped)
            composite.add_metric([view.id], stats.composite_seconds)
            encode.add_metric([view.id], sum(o.encode_seconds for o in view.video_outputs.values()))
        for gone in set(self._last) - seen:
            del self._last[gone]
        yield from (fps, frames, dropped, composite, encode)


def create_registry(server: Server) -> CollectorRegistry:
    """A registry of the server's own metrics plus process CPU/memory, GC and platform."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(TesseraCollector(server))
    return registry
