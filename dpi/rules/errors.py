"""Internal signals raised while one rule is parsed; the loader turns them into RuleError/SkippedRule."""

from __future__ import annotations


class RuleSyntaxError(Exception):
    """The rule is invalid; position is an offset into the (joined) rule text."""

    def __init__(self, message: str, position: int, sid: int | None = None):
        super().__init__(message)
        self.message = message
        self.position = position
        self.sid = sid


class RuleSkip(Exception):
    """The rule is valid as far as we read it but uses something we do not support."""

    def __init__(self, reason: str, sid: int | None = None, keyword: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.sid = sid
        self.keyword = keyword  # the keyword (or header field) that made the rule unusable
