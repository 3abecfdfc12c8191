"""ablate.common.markdown: generated blocks, tables, GitHub heading slugs and links."""

import pytest

from ablate.common.markdown import END, anchors, begin, blocks, links, replace_block, slug, table


@pytest.mark.parametrize("heading, expected", [
    ("What `make ablation` produced", "what-make-ablation-produced"),
    ("Params, MACs and FLOPs", "params-macs-and-flops"),
    ("Seed 002, experiment 1: pooling order", "seed-002-experiment-1-pooling-order"),
    ("Against seed 002's conclusions", "against-seed-002s-conclusions"),
    ("Pool order (`pool`, ResNets)", "pool-order-pool-resnets"),
    ("snake_case and-dash  twice", "snake_case-and-dash--twice"),
    ("A **bold** [link](x.md) here", "a-bold-link-here"),
    ("Δ vs baseline", "δ-vs-baseline"),
])
def test_slug_is_githubs(heading, expected):
    assert slug(heading) == expected


def test_anchors_number_duplicates_and_skip_code():
    text = "# A\n## A\n```\n# not a heading\n```\n### A ###\n#nospace\n"
    assert anchors(text) == {"a", "a-1", "a-2"}


def test_links_outside_code():
    text = ("See [a](a.md#x) and ![img](p.png \"title\").\n`[no](code.md)`\n"
            "```\n[no](fenced.md)\n```\n[`code text`](b.md)\n")
    assert links(text) == ["a.md#x", "p.png", "b.md"]


def test_table_escapes_pipes():
    assert table(("a", "b"), [("x|y", 1)]) == "| a | b |\n|---|---|\n| x\\|y | 1 |\n"
    assert table(("a",), [("timm-<name>, `timm-<name>`",)]).endswith(
        "| timm-&lt;name>, `timm-<name>` |\n")


def test_replace_block_keeps_markers_and_the_rest():
    text = f"intro\n{begin('one')}\nold\n{END}\nmiddle\n{begin('two')}\n{END}\nend\n"
    new = replace_block(replace_block(text, "one", "new\n"), "two", "second")
    assert new == f"intro\n{begin('one')}\nnew\n{END}\nmiddle\n{begin('two')}\nsecond\n{END}\nend\n"
    assert blocks(new) == {"one": "new\n", "two": "second\n"}
    with pytest.raises(ValueError, match="no generated block 'three'"):
        replace_block(text, "three", "x")


def test_a_marker_quoted_in_a_line_is_text():
    assert blocks(f"write `{begin('name')}` ... `{END}`\n") == {}


def test_broken_blocks_are_refused():
    with pytest.raises(ValueError, match="has no"):
        blocks(f"{begin('one')}\nold\n")
    with pytest.raises(ValueError, match="appears twice"):
        blocks(f"{begin('one')}\n{END}\n{begin('one')}\n{END}\n")
