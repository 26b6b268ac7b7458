"""Rule variables ($HOME_NET, $HTTP_PORTS, ...) with Suricata's default suricata.yaml values.

Address and port variables share one namespace here (their default names do not clash); a variable is
read as an address group or a port group according to where the rule uses it.
"""

from __future__ import annotations

from collections.abc import Mapping

from dpi.rules.addresses import (
    ADDRESS_UNIVERSE,
    IPV4_FAMILY,
    IPV6_FAMILY,
    AddressError,
    AddressSet,
    parse_address_atom,
)
from dpi.rules.groups import GroupError, GroupKind, evaluate
from dpi.rules.intervals import Intervals
from dpi.rules.ports import PORT_UNIVERSE, PortError, PortSet, parse_port_atom

# vars.address-groups of Suricata's suricata.yaml.in (AIM_SERVERS is $EXTERNAL_NET there, not $HOME_NET)
DEFAULT_ADDRESS_GROUPS: dict[str, str] = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
}

# vars.port-groups of Suricata's suricata.yaml.in
DEFAULT_PORT_GROUPS: dict[str, str] = {
    "HTTP_PORTS": "80",
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "SSH_PORTS": "22",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
}

ADDRESS_KIND = GroupKind(
    noun="address",
    plural="addresses",
    universe=ADDRESS_UNIVERSE,
    parse_atom=parse_address_atom,
    atom_errors=(AddressError,),
    families=(IPV4_FAMILY, IPV6_FAMILY),
)
PORT_KIND = GroupKind(
    noun="port",
    plural="ports",
    universe=PORT_UNIVERSE,
    parse_atom=parse_port_atom,
    atom_errors=(PortError,),
)


class Variables:
    """Variable values (defaults overridden by the caller) and caches of evaluated groups."""

    def __init__(self, overrides: Mapping[str, str | int] | None = None):
        values = {**DEFAULT_ADDRESS_GROUPS, **DEFAULT_PORT_GROUPS}
        for name, value in (overrides or {}).items():
            values[name.lstrip("$")] = str(value)
        self.values: dict[str, str] = values
        self._groups: dict[tuple[str, str], AddressSet | PortSet | GroupError] = {}
        self._vars: dict[tuple[str, str], Intervals] = {}

    def address(self, text: str) -> AddressSet:
        """The AddressSet of an address group expression; raises GroupError."""
        return self._group(text, ADDRESS_KIND, AddressSet)

    def ports(self, text: str) -> PortSet:
        """The PortSet of a port group expression; raises GroupError."""
        return self._group(text, PORT_KIND, PortSet)

    def _group(self, text, kind, factory):
        key = (kind.noun, text)
        cached = self._groups.get(key)
        if cached is None:
            try:
                cached = factory(evaluate(text, kind, lambda name: self._resolve(kind, name, ())))
            except GroupError as exc:
                cached = exc
            self._groups[key] = cached
        if isinstance(cached, GroupError):
            raise GroupError(cached.message, cached.position)
        return cached

    def _resolve(self, kind: GroupKind, name: str, chain: tuple[str, ...]) -> Intervals:
        key = (kind.noun, name)
        cached = self._vars.get(key)
        if cached is not None:
            return cached
        if name in chain:
            loop = " -> ".join(f"${n}" for n in (*chain, name))
            raise GroupError(f"variable loop: {loop}")
        value = self.values.get(name)
        if value is None:
            raise GroupError(f"undefined variable ${name}")
        try:
            result = evaluate(value, kind, lambda inner: self._resolve(kind, inner, (*chain, name)))
        except GroupError as exc:
            if exc.message.startswith("variable loop"):
                raise
            raise GroupError(f"in ${name} = '{value}': {exc.message}") from None
        self._vars[key] = result
        return result
