"""Tests for ablate.bench.report: the committed report is rebuilt from its csv, word for word
(tables compared cell by cell, their padding aside), and the csv keeps its columns."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ablate.bench.report import markdown, write_csv
from ablate.bench.settings import DEFAULTS
from ablate.bench.stats import COLUMNS, result_row

RESULTS = Path(__file__).resolve().parents[2] / "results" / "bench"
NUMBERS = ("median", "min", "max", "ci_low", "ci_high")


def _read_rows(path: Path) -> list[dict]:
    """The csv's rows with numbers as ``run_bench`` held them (blank stays blank)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in NUMBERS:
            row[key] = "" if row[key] == "" else float(row[key])
        row["n"] = "" if row["n"] == "" else int(row["n"])
    return rows


def _header(md: str) -> dict[str, str]:
    """The ``meta`` a report was written with: its title and the ``- key: value`` lines."""
    lines = md.split("\n")
    meta = {"title": lines[0].removeprefix("# ablate bench: ")}
    for line in lines[2:]:
        if not line.startswith("- "):
            break
        key, value = line[2:].split(": ", 1)
        meta[key] = value
    return meta


def _cells(md: str) -> list[str | list[str]]:
    """Text lines as they are; table lines as their stripped cells (separators as '---')."""
    out: list[str | list[str]] = []
    for line in md.split("\n"):
        if not line.startswith("|"):
            out.append(line)
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        out.append(["---"] * len(cells) if all(re.fullmatch(r":?-+:?", c) for c in cells)
                   else cells)
    return out


def test_committed_report_is_rebuilt_from_its_csv():
    """``make bench`` (default settings) wrote results/bench/cpu.md from the rows in cpu.csv."""
    committed = (RESULTS / "cpu.md").read_text()
    rebuilt = markdown(_read_rows(RESULTS / "cpu.csv"), _header(committed), DEFAULTS)
    assert _cells(rebuilt) == _cells(committed)
    lines = rebuilt.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    first = lines[start:end]  # the variants table, padded to its column widths by tabulate
    assert len({len(line) for line in first}) == 1 and re.fullmatch(r"\|(:-+\|)+", first[1])


def test_csv_has_the_columns_and_keeps_blanks(tmp_path):
    rows = [{**result_row("variant", "v", "params_m", "M", [1.5]), "device": "cpu"},
            {**result_row("cuda", "v", "input_wait_share", "fraction",
                          note="no CUDA device here"),
             "device": "cpu"}]
    write_csv(rows, tmp_path / "cpu.csv")
    with open(tmp_path / "cpu.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        back = list(reader)
    assert back[0]["median"] == "1.5" and back[0]["n"] == "1" and back[0]["ci_low"] == ""
    assert back[1]["median"] == back[1]["n"] == "" and back[1]["note"] == "no CUDA device here"
