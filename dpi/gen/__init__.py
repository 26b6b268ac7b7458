"""Synthetic traffic for tests and benchmarks (the labelled generator of a later issue
grows from here)."""

from dpi.gen.tcp import synthetic_tcp_pcap

__all__ = ["synthetic_tcp_pcap"]
