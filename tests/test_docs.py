"""The docs: every generated block equals what its registry generates (``ablate docs``), every
relative link and anchor of README.md and docs/*.md resolves, and the key tables' defaults are
the parsers'."""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path

import pytest

from ablate.cli import DOCS_DIR, GENERATED, generate_docs, main
from ablate.common.markdown import anchors, begin, blocks, links, replace_block

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("name", GENERATED)
def test_generated_block_is_current(name):
    page, make = GENERATED[name]
    committed = blocks((DOCS_DIR / page).read_text()).get(name)
    assert committed is not None, f"docs/{page} lacks the block {begin(name)!r}"
    assert committed == make().strip("\n") + "\n", f"docs/{page}: block {name!r} is stale; " \
                                                   "run `ablate docs` and commit the page"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_marker_names_a_generator(path):
    for name in blocks(path.read_text()):
        assert name in GENERATED and GENERATED[name][0] == path.name, \
            f"{path.name}: block {name!r} is written by no generator of this page"


def test_docs_check_names_the_stale_page(tmp_path, capsys):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS_DIR, docs)
    assert main(["docs", "--check", "--docs", str(docs)]) == 0
    page = docs / GENERATED["metrics"][0]
    page.write_text(replace_block(page.read_text(), "metrics", "| old |\n"))
    assert main(["docs", "--check", "--docs", str(docs)]) == 1
    assert f"{page} is stale (metrics)" in capsys.readouterr().err
    assert "| old |" in page.read_text()  # --check writes nothing
    assert main(["docs", "--docs", str(docs)]) == 0
    assert generate_docs(docs, check=True) == {}
    assert page.read_text() == (DOCS_DIR / page.name).read_text()


def _targets():
    for page in PAGES:
        for target in links(page.read_text()):
            if "://" not in target and not target.startswith("mailto:"):
                yield pytest.param(page, target, id=f"{page.name}:{target}")


@pytest.mark.parametrize("page, target", list(_targets()))
def test_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.exists(), f"{page.name}: {target} -> {file} does not exist"
    if anchor:
        assert file.suffix == ".md", f"{page.name}: {target}: an anchor into a non-Markdown file"
        found = anchors(file.read_text())
        assert anchor in found, f"{page.name}: {target}: no heading makes #{anchor} in " \
                                f"{file.name} (anchors: {', '.join(sorted(found))})"


def test_every_page_is_in_the_index():
    index = (ROOT / "docs" / "README.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"
            assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_the_documented_defaults_are_the_parsers():
    from ablate.experiment import parse_experiment
    from ablate.models.variant import Variant
    from ablate.scale.search_spec import parse_search

    exp = parse_experiment({}, default_name="stem")
    assert (exp.name, exp.preset, exp.seeds, exp.profile_size, exp.metric, exp.description) == \
        ("stem", "quick", (0,), 224, "dice", "")
    assert exp.data.name == "shapes" and exp.baseline == Variant() and exp.variants == (Variant(),)
    assert exp.equivalence == () and exp.adaptive is None
    spec = parse_search({"space": {"width_mult": [0.5 + i / 10 for i in range(25)]}}, "stem")
    assert (spec.name, spec.seed, spec.objectives, spec.trials, spec.max_trials) == \
        ("stem", 0, ("dice",), 20, 200)
    assert (spec.pruner[0], spec.sampler[0], spec.storage, spec.budget_gmacs) == \
        ("none", "tpe", None, None)


def _quoted(pattern):
    for page in PAGES:
        for match in sorted(set(re.findall(pattern, page.read_text()))):
            yield pytest.param(page, match, id=f"{page.name}:{match}")


@pytest.mark.parametrize("page, path", list(_quoted(r"`((?:ablate|tests|experiments)/[\w/.-]+)`")))
def test_quoted_source_path_exists(page, path):
    assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"


@pytest.mark.parametrize("page, name", list(_quoted(r"`(ablate(?:\.\w+)+)`")))
def test_quoted_dotted_name_resolves(page, name):
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"{page.name} names {name}: {attr!r} does not exist"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"{page.name} names {name}, which is not importable")
