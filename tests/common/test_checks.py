"""Tests for ablate.common.checks: which keyword options a builder takes, and the refusal."""

from __future__ import annotations

import pytest

from ablate.common.checks import refuse_untaken, untaken


def plain(in_ch, out_ch, norm="bn"):
    return in_ch, out_ch, norm


def keyword_only(in_ch, *, rate=0.0):
    return in_ch, rate


def anything(in_ch, **options):
    return in_ch, options


def test_untaken_names_what_a_builder_has_no_keyword_for():
    assert untaken(plain, ["norm", "rate", "out_ch"]) == ["rate"]
    assert untaken(keyword_only, ["rate", "norm"]) == ["norm"]
    assert untaken(anything, ["rate", "norm"]) == []


def test_refuse_untaken_names_the_option_the_takers_and_the_builder():
    builders = {"plain": plain, "kw": keyword_only, "any": anything}
    refuse_untaken({"rate": 0.1}, "kw", builders, "a block", "block kw")  # taken: no error
    refuse_untaken({}, "plain", builders, "a block", "block plain")
    with pytest.raises(ValueError, match=r"^rate=0.1 needs a block that takes `rate` \(kw, any\); "
                                         r"block plain does not \(its builder plain has no "
                                         r"`rate` argument\)$"):
        refuse_untaken({"rate": 0.1}, "plain", builders, "a block", "block plain")
    with pytest.raises(ValueError, match=r"needs a block that takes `size` \(any\)"):
        refuse_untaken({"size": 3}, "kw", builders, "a block", "block kw")
