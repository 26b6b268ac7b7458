"""`dpi bench`: throughput per stage and end to end, swept over rule sets, packet sizes and flows,
set beside commodity line rates; and the NIC replay harness (`dpi bench nic`)."""
