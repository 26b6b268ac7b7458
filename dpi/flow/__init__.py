"""Flow tracking: the 5-tuple (+VLAN) hash table in arrays."""

from dpi.flow.table import TO_CLIENT, TO_SERVER, FlowTable, track_flows

__all__ = ["FlowTable", "TO_CLIENT", "TO_SERVER", "track_flows"]
