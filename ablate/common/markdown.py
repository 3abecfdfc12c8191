"""Markdown plumbing for the docs: generated blocks, tables, GitHub heading slugs and links.

A generated block is the text between the lines ``<!-- generated: NAME (ablate docs) -->`` and
``<!-- end generated -->`` (markers quoted inside a line are text); ``ablate docs`` rewrites it
from the function that owns it. Imports nothing of ablate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

END = "<!-- end generated -->"
_BEGIN = re.compile(r"^<!-- generated: ([\w.-]+) \(ablate docs\) -->", re.M)
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+).*?\1")


def begin(name: str) -> str:
    """The opening marker of block ``name``."""
    return f"<!-- generated: {name} (ablate docs) -->"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub Markdown table; ``|``, newlines and, outside code spans, ``<`` (which would open an
    HTML tag: ``timm-<name>``) are escaped inside cells."""

    def cell(value: object) -> str:
        parts = re.split(r"(`+.*?`+)", str(value).replace("\n", " "))
        text = "".join(p if p.startswith("`") else p.replace("<", "&lt;") for p in parts)
        return text.replace("|", r"\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def blocks(text: str) -> dict[str, str]:
    """Every generated block of a page: name -> its body (the text between the markers)."""
    found: dict[str, str] = {}
    for match in _BEGIN.finditer(text):
        name = match.group(1)
        end = text.find(END, match.end())
        if end < 0:
            raise ValueError(f"generated block {name!r} has no {END!r}")
        if name in found:
            raise ValueError(f"generated block {name!r} appears twice")
        found[name] = text[match.end():end].strip("\n") + "\n"
    return found


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the body of block ``name`` replaced by ``body``; the markers stay."""
    blocks(text)  # refuses unclosed and repeated blocks
    match = next((m for m in _BEGIN.finditer(text) if m.group(1) == name), None)
    if match is None:
        raise ValueError(f"no generated block {name!r} (a line {begin(name)!r} ... {END!r})")
    head = match.end()
    end = text.find(END, head)
    return text[:head] + "\n" + body.strip("\n") + "\n" + text[end:]


def _prose(text: str) -> Iterable[str]:
    """The lines of ``text`` outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: inline markup dropped, lowercase, every character
    but letters, digits, ``-``, ``_`` and spaces removed, each space turned into ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated slug gets ``-1``, ``-2``... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(text):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        anchor = base if base not in seen else f"{base}-{seen[base]}"
        seen[base] = seen.get(base, 0) + 1
        found.add(anchor)
    return found


def links(text: str) -> list[str]:
    """Targets of the page's links and images (``[text](target)``), outside code."""
    return [m.group(1) for line in _prose(text)
            for m in _LINK.finditer(_CODE_SPAN.sub("", line))]
