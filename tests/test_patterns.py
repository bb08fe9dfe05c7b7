"""Each hand-written pattern predicate agrees with its regex (ECMA-262 ``$``) on generated strings."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ociruntime.patterns import PREDICATES

ALPHABET = "0123456789.+-_ ,:/\nABCKMGTPEZabzrwmIMLTRSCAP"
# Strings built from the pieces the patterns care about, so matches are common too.
PIECES = ["CAP_", "RLIMIT_", "MB:", "1", "0", "01", "12", ".", "-", "+", "rc", "B", "K", "/", "rwm", "\n", "_X9"]


def _ecma(pattern):
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)


@pytest.mark.parametrize("pattern", sorted(PREDICATES))
@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(alphabet=ALPHABET, max_size=16),
                      st.lists(st.sampled_from(PIECES), max_size=8).map("".join)))
def test_predicate_matches_regex(pattern, text):
    assert PREDICATES[pattern](text) == bool(_ecma(pattern).search(text)), repr(text)


@pytest.mark.parametrize("text,ok", [("1.0.0", True), ("1.0.2-dev", True), ("1.2.0-rc.1+b.5", True),
                                     ("01.0.0", False), ("1.0", False), ("1.0.0-01", False), ("1.0.0\n", False)])
def test_semver_examples(text, ok):
    assert PREDICATES[next(p for p in PREDICATES if p.startswith("^(?:0"))](text) is ok
