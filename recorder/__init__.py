"""Recording: streams written to files by muxing their shared encoded packets."""

from .muxer import CONTAINERS, MuxerError, PacketMuxer, choose_container

__all__ = ["CONTAINERS", "MuxerError", "PacketMuxer", "choose_container"]
