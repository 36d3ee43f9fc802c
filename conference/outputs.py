"""What outputs the room service makes, for front ends that check requests for them:
recording containers and streaming-out protocols (the recorder's own lists)."""

from __future__ import annotations

from tessera.recorder.muxer import CONTAINERS, PLAYABLE
from tessera.recorder.streamingtarget import PROTOCOLS, guess_protocol

__all__ = ["PLAYABLE", "PROTOCOLS", "RECORDING_CONTAINERS", "guess_protocol"]

# What a recording may be written as: "auto" (OWT's choice by codec) or a container.
RECORDING_CONTAINERS: tuple[str, ...] = ("auto", *CONTAINERS)
