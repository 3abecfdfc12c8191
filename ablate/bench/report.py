"""The output of ``ablate bench``: the csv (one row per measurement, ``COLUMNS``) and the
Markdown report (the machine header, then one ``tabulate`` table per section with the text that
reads it: conventions, goals and verdicts)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from tabulate import tabulate

from .measure import (
    OVERHEAD_STEPS,
    PEER_DIFFERENCES,
    PEER_NAME,
    PEER_VARIANT,
    SWITCH_LABELS,
    SWITCHES,
    TRIVIAL,
    TRIVIAL_STEPS,
)
from .settings import BenchSettings
from .stats import CI_MIN_ROUNDS, COLUMNS, bound_verdict, faster, verdict

OVERHEAD_GOAL = 1.03          # harness / bare loop epoch time


def write_csv(rows: Sequence[dict], path: str | Path) -> None:
    """``rows`` under a header of ``COLUMNS``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _num(value: float | str, digits: int = 3) -> str:
    if value == "":
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) < 100 else f"{value:.0f}"


def _spread(row: dict | None) -> str:
    """``median [95% CI]`` of a ratio row, ``median (min–max)`` below ``CI_MIN_ROUNDS`` rounds,
    or a dash when it was not measured."""
    if row is None or row["median"] == "":
        return "–"
    if row["n"] == 1:
        return f"{row['median']:.3f} (one round)"
    if row["ci_low"] != "":
        return f"{row['median']:.3f} [{_ci(row)}]"
    return f"{row['median']:.3f} ({row['min']:.3f}–{row['max']:.3f})"


def _fixed(value: float | str, decimals: int = 3) -> str:
    return "–" if value == "" else f"{value:.{decimals}f}"


def _range(row: dict, decimals: int = 3) -> str:
    if row["median"] == "":
        return "–"
    return f"{_fixed(row['min'], decimals)} to {_fixed(row['max'], decimals)}"


def _ci(row: dict, decimals: int = 3) -> str:
    if row["ci_low"] == "":
        return "–"
    return f"{_fixed(row['ci_low'], decimals)} to {_fixed(row['ci_high'], decimals)}"


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown (pipe) table of text cells, as lines, and a blank line after it."""
    table = tabulate(list(body), list(header), tablefmt="pipe", disable_numparse=True)
    return table.splitlines() + [""]


def markdown(rows: list[dict], meta: dict[str, str], settings: BenchSettings) -> str:
    """The report: the header from ``meta``, then one table per section, built from ``rows``."""
    at = {(r["section"], r["variant"], r["metric"]): r for r in rows}

    def med(section: str, variant: str, metric: str, digits: int = 3) -> str:
        row = at.get((section, variant, metric))
        return "–" if row is None else _num(row["median"], digits)

    def ratio(section: str, variant: str, metric: str) -> str:
        return _spread(at.get((section, variant, metric)))

    b = settings.batch
    out = [f"# ablate bench: {meta['title']}", ""]
    out += [f"- {key}: {value}" for key, value in meta.items() if key != "title"]
    out += ["", "Medians over rounds. Each ratio is taken per round between measurements made "
            "back to back in this process (alternating ABBA), and quoted as median [95% "
            "confidence interval of the median, distribution-free] over rounds, or as median "
            f"(min–max) where there are fewer than {CI_MIN_ROUNDS} rounds. A time ratio below 1 "
            "means the first named is faster.", ""]

    variants = list(dict.fromkeys(r["variant"] for r in rows if r["section"] == "variant"))
    memory = at[("variant", variants[0], "peak_mem_mb")]["note"]
    out += ["## Variants", "",
            f"Goal: harness / bare loop at most {OVERHEAD_GOAL}; rounds per variant here: "
            f"{settings.repeats}; the next section settles the goal with more. "
            f"Latency: eval mode, fp32, median of 5 forwards per round. Peak memory: {memory}.",
            ""]
    out += _table(
        ["variant", "params (M)", "latency b1 (ms)", f"latency b{b} (ms)",
         "train img/s (harness)", "train img/s (bare)", "harness / bare time", "peak mem (MB)"],
        [[f"`{v}`", med("variant", v, "params_m", 4), med("variant", v, "latency_b1_ms"),
          med("variant", v, "latency_batch_ms"), med("variant", v, "train_images_per_s"),
          med("variant", v, "bare_images_per_s"), ratio("variant", v, "harness_over_bare"),
          med("variant", v, "peak_mem_mb")] for v in variants])

    ov = next(r["variant"] for r in rows if r["section"] == "overhead")
    harness = at[("overhead", ov, "harness_over_bare")]
    floor = at[("overhead", ov, "bare_copy_over_bare")]
    extra = at[("overhead", TRIVIAL, "harness_extra_us")]
    extra_floor = at[("overhead", TRIVIAL, "bare_copy_extra_us")]
    bare_ms = at[("overhead", ov, "bare_step_ms")]["median"]
    out += ["## Harness overhead", "",
            f"Three copies of a model, trained by the harness step, the bare loop and the bare "
            f"loop again, take turns over {harness['n']} rounds. The bare loop against its own "
            "copy runs identical code: its row is this machine's noise floor. First on "
            f"`{ov}`, rounds of {OVERHEAD_STEPS} batches (median step: harness "
            f"{med('overhead', ov, 'harness_step_ms')} ms, bare {_num(bare_ms)} ms); then on a "
            f"1x1 convolution, rounds of {TRIVIAL_STEPS} steps on one image, where a step "
            f"(bare: {med('overhead', TRIVIAL, 'bare_step_us')} µs) is mostly Python and kernel "
            "launches, so the time the harness adds per step shows in microseconds; its upper "
            f"bound over the variant's step bounds the overhead. Goal: harness / bare at most "
            f"{OVERHEAD_GOAL}.", ""]
    out += _table(["comparison", "median", "95% CI of the median", "min to max", "goal"], [
        ["harness / bare loop", _fixed(harness["median"]), _ci(harness), _range(harness),
         verdict(harness, OVERHEAD_GOAL, floor)],
        ["bare copy / bare loop (noise floor)", _fixed(floor["median"]), _ci(floor),
         _range(floor), "–"],
        ["time the harness adds per step (µs, 1x1 conv)", _fixed(extra["median"], 1),
         _ci(extra, 1), _range(extra, 1), bound_verdict(extra, bare_ms, OVERHEAD_GOAL)],
        ["bare copy - bare loop per step (µs, noise floor)", _fixed(extra_floor["median"], 1),
         _ci(extra_floor, 1), _range(extra_floor, 1), "–"],
    ])

    ours = PEER_VARIANT.id
    out += ["## Peer: segmentation_models_pytorch", "",
            f"`smp.Unet(\"resnet18\", encoder_weights=None, decoder_channels="
            f"{PEER_VARIANT.widths})` against our closest variant `{ours}`, both trained by the "
            "harness step on the same batches. Goal: ours / smp at most 1.", ""]
    if at[("peer", ours, "train_time_ratio")]["median"] == "":
        out += [f"Not measured: {at[('peer', ours, 'train_time_ratio')]['note']}.", ""]
    out += _table(["measurement", f"ours `{ours}`", PEER_NAME, "ours / smp"], [
        ["parameters (M)", med("peer", ours, "params_m", 7),
         med("peer", PEER_NAME, "params_m", 7), "–"],
        ["training (images/s)", med("peer", ours, "train_images_per_s"),
         med("peer", PEER_NAME, "train_images_per_s"),
         "time " + ratio("peer", ours, "train_time_ratio")],
        ["latency batch 1 (ms)", med("peer", ours, "latency_b1_ms"),
         med("peer", PEER_NAME, "latency_b1_ms"), ratio("peer", ours, "latency_b1_ratio")],
        [f"latency batch {b} (ms)", med("peer", ours, "latency_batch_ms"),
         med("peer", PEER_NAME, "latency_batch_ms"), ratio("peer", ours, "latency_batch_ratio")],
    ])
    out += ["Differences that remain:", ""] + [f"- {d}" for d in PEER_DIFFERENCES] + [""]

    tv = next(r["variant"] for r in rows if r["section"] == "data" and r["variant"])
    files = at[("data", "", "decode_epoch_s")]["note"].removeprefix("data only, ")
    out += ["## Data path", "",
            f"{files}; no augmentation on either side. Cache: `load_dataset` decodes once into "
            "the cache and `BatchLoader` batches on the device. Decode: a torch `DataLoader` "
            "(`num_workers=0`) that opens and resizes every PNG with PIL each epoch. The cache "
            f"is built once per dataset and size: {med('data', '', 'cache_first_load_s')} s to "
            f"decode and write, {med('data', '', 'cache_hit_load_s')} s to read back.", ""]
    out += _table(["epoch", "decode every epoch (s)", "decode-once cache (s)", "cache / decode"], [
        ["data only", med("data", "", "decode_epoch_s"), med("data", "", "cache_epoch_s"),
         ratio("data", "", "data_epoch_ratio")],
        [f"training `{tv}`", med("data", tv, "train_decode_epoch_s"),
         med("data", tv, "train_cache_epoch_s"), ratio("data", tv, "train_epoch_ratio")],
    ])

    switches = [r for r in rows if r["section"] == "switches"]
    out += ["## Switches", "",
            f"On `{switches[0]['variant']}`, each switch on its own against the plain path (fp32, "
            "contiguous, eager, every core), in alternating rounds; speed-up = epoch time plain "
            "/ with the switch, per round. A switch is measurably faster when the 95% CI of its "
            "speed-up lies above 1; the quick preset turns on the CPU switches that are "
            "(tests/bench/test_measure.py).", ""]
    out += _table(["switch", "speed-up", "95% CI of the median", "verdict", "note"],
                  [[SWITCH_LABELS[SWITCHES[r["metric"]]], _num(r["median"]), _ci(r),
                    faster(r), r["note"]] for r in switches])

    cuda = [r for r in rows if r["section"] == "cuda"]
    out += ["## CUDA input", "",
            f"On `{cuda[0]['variant']}` with the full preset's switches. Input wait = 1 - (epoch "
            "time on the same batches made in advance on the device) / (epoch time with the "
            "loader): what feeding costs the step, stalls included. Loader time = time inside "
            "the loader, synchronized before and after each batch, over the epoch time: its own "
            "work, overlap removed. Goal for input wait: under 5%.", ""]
    if all(r["note"] == "no CUDA device here" for r in cuda):
        out += ["No CUDA device here: these rows stay empty until `ablate bench` runs on a GPU.",
                ""]
    names = {"input_wait_share": "input wait (share of step time)",
             "loader_time_share": "loader time (share of step time)"}
    out += _table(["measurement", "median (min–max)", "note"],
                  [[names[r["metric"]], _spread(r), r["note"]] for r in cuda])

    jobs = [r for r in rows if r["section"] == "jobs"]
    walls = [r for r in jobs if r["metric"] == "study_wall_s"]
    out += ["## Jobs: one process against N", ""]
    if not walls:
        out += ["Not measured: this file predates the section; `make bench` measures it.", ""]
        return "\n".join(out)
    out += [f"The same cells ({walls[0]['note']}; no encoder init) trained from scratch by "
            "`ablate run --jobs N` (`ablate.scale.jobs`), each setting into a fresh folder, in "
            "alternating rounds after one warm-up; every side pays its processes' start. "
            "Speed-up = wall time of one job / of the setting, per round. `make ablation` "
            "runs with the `JOBS` measured fastest here.", ""]
    out += _table(["setting", "wall time (s)", "speed-up over one job", "verdict"],
                  [[r["variant"], med("jobs", r["variant"], "study_wall_s"),
                    ratio("jobs", r["variant"], "jobs_speedup"),
                    faster(at[("jobs", r["variant"], "jobs_speedup")])] for r in walls])
    return "\n".join(out)
