"""Stream reassembly: in-order chunks per flow direction."""

from dpi.stream.chunks import SRC_CAPTURE, SRC_SIDE, ChunkTable
from dpi.stream.tcp import StreamConfig, TcpReassembler

__all__ = ["ChunkTable", "SRC_CAPTURE", "SRC_SIDE", "StreamConfig", "TcpReassembler"]
