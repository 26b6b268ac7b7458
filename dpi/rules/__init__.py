"""Suricata/Snort rule parser: rule text -> plain dataclasses (see parser.py for the rules of the game)."""

from dpi.rules.addresses import AddressSet, ip_to_int
from dpi.rules.classification import Classtype, load_classification
from dpi.rules.model import Content, FlowOptions, Rule, RuleError, RuleSet, SkippedRule
from dpi.rules.parser import load_rules, parse_rules
from dpi.rules.ports import PortSet
from dpi.rules.variables import DEFAULT_ADDRESS_GROUPS, DEFAULT_PORT_GROUPS, Variables

__all__ = [
    "AddressSet",
    "Classtype",
    "Content",
    "DEFAULT_ADDRESS_GROUPS",
    "DEFAULT_PORT_GROUPS",
    "FlowOptions",
    "PortSet",
    "Rule",
    "RuleError",
    "RuleSet",
    "SkippedRule",
    "Variables",
    "ip_to_int",
    "load_classification",
    "load_rules",
    "parse_rules",
]
