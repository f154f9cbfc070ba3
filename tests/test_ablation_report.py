"""An ablation's report opens with its answer: the primary family, Holm-adjusted, with the MDE, the
networks needed and a verdict word; the rest is exploratory. Built from records with known answers (the
committed em-cpu records as templates, their scores replaced), so nothing is trained."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unetbench.ablation import AblationDir
from unetbench.ablation.records import AblationManifest, PlannedRunEntry
from unetbench.ablation.report import render_ablation_report
from unetbench.ablation.summary import summarise
from unetbench.cli import main
from unetbench.records.json_io import read_json_record, write_json_record
from unetbench.records.run_record import RunRecord

TEMPLATES = Path(__file__).resolve().parents[1] / "reports" / "em-cpu" / "ablation-c0f59a7e" / "records"
FOLDS = 6
# variant -> Δ rand_error per fold (variant minus baseline): one known answer for each verdict word
DIFFERENCES = {
    "better": [-0.030, -0.031, -0.029, -0.030, -0.032, -0.028],  # lower Rand error: better, resolved
    "worse": [0.040, 0.041, 0.039, 0.040, 0.042, 0.038],  # resolved the other way
    "equivalent": [0.0002, -0.0001, 0.0001, -0.0002, 0.0000, 0.0001],  # well inside ±0.005
    "undecided": [0.02, -0.02, 0.015, -0.018, 0.004, 0.001],  # spread too wide to say anything
}
BASELINE = [0.08, 0.07, 0.05, 0.11, 0.12, 0.06]


def _template(fold: int) -> RunRecord:
    from unetbench.records.run_record import RECORD_SCHEMA

    (folder,) = TEMPLATES.glob(f"baseline-fold{fold}-seed0-*")
    return read_json_record(folder / "record.json", RunRecord, what="a run record", schema=RECORD_SCHEMA)


def _with_score(record: RunRecord, value: float, variant: str) -> RunRecord:
    aggregate = {**record.trained.aggregate, "rand_error": value}
    per_image = {name: {**scores, "rand_error": value} for name, scores in record.trained.per_image.items()}
    trained = dataclasses.replace(record.trained, aggregate=aggregate, per_image=per_image)
    return dataclasses.replace(record, trained=trained, run_id=f"{variant}-{record.run_id}")


def known_answers(folder: Path) -> AblationDir:
    """An ablation folder with a baseline and one variant per verdict word over 6 folds."""
    entries = []
    for fold in range(FOLDS):
        template = _template(fold)
        folds = [o for o in template.overrides if o.startswith("data.split.")]
        for variant, differences in {"baseline": [0.0] * FOLDS, **DIFFERENCES}.items():
            name = f"{variant}-fold{fold}-seed0"
            record = _with_score(template, BASELINE[fold] + differences[fold], variant)
            write_json_record(folder / "records" / name / "record.json", record)
            overrides = [] if variant == "baseline" else [f'training.optimizer="{variant}"']
            entries.append(PlannedRunEntry(variant, fold, 0, f"records/{name}", overrides + folds, None))
    manifest = AblationManifest(
        kind="ablation",
        challenge="em-cpu",
        spec_file="challenges/em-cpu.toml",
        command="unetbench ablate (known answers)",
        switches=[],
        vary=[],
        folds=FOLDS,
        seeds=1,
        grid="one",
        runs=entries,
    )
    write_json_record(folder / AblationDir.MANIFEST, manifest)
    return AblationDir(folder)


def test_the_report_opens_with_the_primary_family_and_each_verdict_word_where_it_is_known(tmp_path):
    directory = known_answers(tmp_path / "known")
    path, summary = render_ablation_report(directory, tmp_path / "reports")
    family = {row.variant: row for row in summary.family.rows}
    assert summary.family.metric == "rand_error" and math.isclose(summary.family.alpha, 0.05 / 4)
    assert {v: r.posterior.verdict for v, r in family.items()} == {
        "better": "better",
        "worse": "worse",
        "equivalent": "equivalent",
        "undecided": "undecided",
    }
    assert [v for v, r in family.items() if r.resolved] == ["better", "worse"]
    text = path.read_text()
    answer, rest = text.split("## Exploratory: every metric, unadjusted")
    assert answer.index("## The answer: rand_error, the primary family") > 0
    assert "resolved" not in rest  # the word belongs to the primary family alone
    rows = {line.split(" | ")[0][2:]: line for line in answer.splitlines() if line.startswith("| ")}
    assert "**resolved**" in rows["better"] and "| better |" in rows["better"]
    assert "**resolved**" in rows["worse"] and "| worse |" in rows["worse"]
    assert "| not resolved |" in rows["equivalent"] and "| equivalent within ±0.005 |" in rows["equivalent"]
    assert "| not resolved |" in rows["undecided"] and rows["undecided"].endswith("| undecided |")
    # what an unresolved answer rules out: the MDE, and no number of seeds for a Δ under the floor
    assert "not reachable with 30 labelled images (6 folds" in rows["undecided"]
    assert "- undecided: not resolved" in answer and "or more with 80% power" in answer
    table = pd.read_csv(path.with_suffix(".csv"), index_col="variant")
    assert table.loc["better", "rand_error_verdict"] == "better"
    assert bool(table.loc["worse", "rand_error_resolved"]) and not bool(
        table.loc["undecided", "rand_error_resolved"]
    )
    assert "rand_error_excludes_0" in table.columns and "warping_error_resolved" not in table.columns


def test_the_family_numbers_are_the_statistics_of_the_paired_differences(tmp_path):
    """Holm over the four t-tests, Bonferroni intervals at 1 - 0.05/4, from the differences alone."""
    from scipy import stats

    directory = known_answers(tmp_path / "known")
    manifest, runs = directory.read_runs()
    summary = summarise(manifest, runs)
    p = {}
    for variant, differences in DIFFERENCES.items():
        d = np.asarray(differences)
        se = d.std(ddof=1) * math.sqrt(1 / 6 + 5 / 20)
        p[variant] = 2 * stats.t.sf(abs(d.mean()) / se, 5)
        row = next(r for r in summary.family.rows if r.variant == variant)
        half = stats.t.ppf(1 - 0.05 / 8, 5) * se
        assert (row.family_low, row.family_high) == pytest.approx((d.mean() - half, d.mean() + half))
        assert row.p == pytest.approx(p[variant])
    order = sorted(p, key=p.get)
    expected, running = {}, 0.0
    for rank, variant in enumerate(order):
        running = max(running, min(1.0, (4 - rank) * p[variant]))
        expected[variant] = running
    assert {r.variant: r.p_holm for r in summary.family.rows} == pytest.approx(expected)


def test_a_superseded_report_opens_with_a_banner_and_keeps_it_when_rendered_again(tmp_path, capsys):
    known_answers(tmp_path / "known")
    reports = tmp_path / "reports"
    command = ["report", str(tmp_path / "known"), "--reports", str(reports)]
    assert main([*command, "--superseded-by", "ablation-new.md"]) == 1
    assert "--superseded-by and --why go together" in capsys.readouterr().err
    assert main([*command, "--superseded-by", "ablation-new.md", "--why", "fair tiling variants"]) == 0
    first = (reports / "em-cpu" / "known.md").read_text()
    assert "**Superseded** by ablation-new.md: fair tiling variants" in first.splitlines()[2]
    assert main(["report", str(reports / "em-cpu" / "known")]) == 0  # from its committed bundle
    assert (reports / "em-cpu" / "known.md").read_text() == first
