"""The schema's ``pattern`` keywords as plain predicates.

Importing ``re`` and compiling a pattern costs milliseconds on every ``create``;
each pattern our schemas use is checked here by a few string operations instead.
tests/test_patterns.py proves each predicate equal to its regex (with ECMA-262's
``$``, end of input) on generated strings. A pattern missing from this table
falls back to ``re``.
"""

_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_ALNUM_DASH = _UPPER | _DIGITS | frozenset("abcdefghijklmnopqrstuvwxyz-")

SEMVER = (
    r"^(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


def _numeric(part):
    return bool(part) and _DIGITS.issuperset(part) and (part == "0" or part[0] != "0")


def is_semver(s):
    """SemVer 2.0.0: MAJOR.MINOR.PATCH[-pre.release][+build.meta]."""
    core, plus, build = s.partition("+")
    if plus and not all(p and _ALNUM_DASH.issuperset(p) for p in build.split(".")):
        return False
    core, dash, pre = core.partition("-")
    if dash and not all(
        p and _ALNUM_DASH.issuperset(p) and (not _DIGITS.issuperset(p) or _numeric(p)) for p in pre.split(".")
    ):
        return False
    parts = core.split(".")
    return len(parts) == 3 and all(_numeric(p) for p in parts)


def _prefixed_name(prefix, allowed):
    def check(s):
        rest = s[len(prefix):]
        return s.startswith(prefix) and bool(rest) and allowed.issuperset(rest)

    return check


def _hugepage_size(s):
    if not s.endswith("B") or len(s) < 2:
        return False
    body = s[:-1]
    if body[-1] in "KMGTPE":
        body = body[:-1]
    return bool(body) and _DIGITS.issuperset(body) and body[0] != "0"


PREDICATES = {
    "^[rwm]*$": frozenset("rwm").issuperset,
    "^[1-9][0-9]*[KMGTPE]?B$": _hugepage_size,
    "^MB:": lambda s: s.startswith("MB:"),
    "\n": lambda s: "\n" in s,
    "^RLIMIT_[A-Z]+$": _prefixed_name("RLIMIT_", _UPPER),
    "^CAP_[A-Z_0-9]+$": _prefixed_name("CAP_", _UPPER | _DIGITS | {"_"}),
    "^[0-9, -]*$": frozenset("0123456789, -").issuperset,
    "^/": lambda s: s.startswith("/"),
    SEMVER: is_semver,
}


def compile_pattern(pattern):
    """A predicate str -> bool for a schema pattern."""
    predicate = PREDICATES.get(pattern)
    if predicate is not None:
        return predicate
    import re

    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern).search
