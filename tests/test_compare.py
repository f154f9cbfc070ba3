"""`unetbench compare`: a leaderboard with how sure its ranking is. A ranking known by construction ranks
stably; two methods equal up to noise overlap and differ significantly nowhere; the statistics agree with
scipy and a direct computation; scores are cached by content (shared safely by comparisons at once);
runs and ablations are methods too; bad input is one line and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, stats

from unetbench.cli import main
from unetbench.datasets import synthetic
from unetbench.leaderboard.ranking import bootstrap_ranks, kendall_taus, protocol_rankings, rank, significance
from unetbench.leaderboard.report import read_comparison

from .helpers import tiny_spec, write_spec


@pytest.fixture(scope="module")
def em(tmp_path_factory):
    """Labels of 12 synthetic EM-like slices, and proposals: the labels blurred by 1, 2 and 3 px (ranked
    by construction), and twice the 2 px one with faint independent noise (equal up to noise)."""
    folder = tmp_path_factory.mktemp("em")
    _, labels = synthetic.em_stacks(0, 12, 96, 96)
    labels = (labels > 0).astype(np.uint8) * 255
    np.save(folder / "gt.npy", labels)
    rng = np.random.default_rng(1)
    for sigma in (1, 2, 3):
        blurred = np.stack([ndimage.gaussian_filter(s / 255.0, sigma) for s in labels]).astype(np.float32)
        np.save(folder / f"blur{sigma}.npy", blurred)
    base = np.load(folder / "blur2.npy")
    for name in ("twin-a", "twin-b"):
        noisy = np.clip(base + rng.normal(0, 0.002, base.shape), 0, 1).astype(np.float32)
        np.save(folder / f"{name}.npy", noisy)
    return folder


def _compare(folder: Path, *methods: str, extra=()) -> int:
    command = ["compare", "--challenge", "em", "--gt", str(folder / "gt.npy"), *methods]
    command += ["--reports", str(folder / "reports"), "--cache", str(folder / "cache"), "--replicates", "500"]
    return main([*command, *extra])


def _latest(folder: Path) -> Path:
    return max((folder / "reports" / "em").glob("compare-*/compare.json"), key=lambda p: p.stat().st_mtime)


def test_a_ranking_known_by_construction_ranks_stably(em, capsys):
    methods = [f"s{s}={em / f'blur{s}.npy'}" for s in (3, 1, 2)]
    assert _compare(em, *methods) == 0
    comparison = read_comparison(_latest(em).parent)
    scores = comparison.matrix("rand_error")
    boot = bootstrap_ranks(scores, False, replicates=500, seed=0)
    names = [m.name for m in comparison.methods]
    assert [names[i] for i in np.argsort(boot.median)] == ["s1", "s2", "s3"]
    assert np.array_equal(boot.low, boot.high)  # tight: every replicate ranks them the same
    full = rank(np.nanmean(scores, axis=1), False)
    assert np.median(kendall_taus(full, boot.ranks)) == pytest.approx(1.0)
    report = (_latest(em).parent.parent / f"{comparison.identifier}.md").read_text()
    assert "| 1 | s1 |" in report
    assert all(f"{a} better than {b}" in report for a, b in (("s1", "s2"), ("s1", "s3"), ("s2", "s3")))
    assert "**The unit is an image.**" in report and "`unetbench ablate`" in report


def test_two_methods_equal_up_to_noise_overlap_and_differ_nowhere(em, capsys):
    assert _compare(em, str(em / "twin-a.npy"), str(em / "twin-b.npy")) == 0
    comparison = read_comparison(_latest(em).parent)
    scores = comparison.matrix("rand_error")
    boot = bootstrap_ranks(scores, False, replicates=500, seed=0)
    assert np.all(boot.low <= 1) and np.all(boot.high >= 2)  # each ranks first in some replicates
    _, adjusted = significance(scores, False)
    assert np.all(adjusted[~np.eye(2, dtype=bool)] >= 0.05)
    report = (_latest(em).parent.parent / f"{comparison.identifier}.md").read_text()
    assert "no method is significantly better than another" in report


def test_the_statistics_agree_with_scipy_and_a_direct_computation():
    rng = np.random.default_rng(4)
    scores = rng.random((4, 20))
    # ranks: scipy's rankdata, 1 = best, ties averaged
    assert list(rank(np.array([0.3, 0.1, 0.3, 0.5]), higher_is_better=True)) == [2.5, 4.0, 2.5, 1.0]
    assert list(rank(np.array([0.3, 0.1, np.nan]), higher_is_better=False)) == [2.0, 1.0, 3.0]
    # Kendall's tau: by hand for one pair of rankings, and scipy's tau-b for rankings with ties
    assert kendall_taus(np.array([1, 2, 3, 4]), np.array([[1, 2, 4, 3]]))[0] == pytest.approx(4 / 6)
    reference = np.array([1.0, 2.5, 2.5, 4.0, 5.0])
    rankings = np.array([[2, 1, 3, 4, 5], [1.5, 1.5, 3, 4.5, 4.5], [5, 4, 3, 2, 1], [3, 3, 3, 3, 3]], float)
    expected = [stats.kendalltau(reference, row).statistic for row in rankings]
    assert kendall_taus(reference, rankings) == pytest.approx(expected, nan_ok=True)
    # Wilcoxon: scipy's one-sided signed-rank on the paired differences
    p, adjusted = significance(scores, higher_is_better=True)
    assert p[0, 1] == pytest.approx(stats.wilcoxon(scores[0] - scores[1], alternative="greater").pvalue)
    # Holm: every ordered pair, the step-down rule by hand
    pairs = [(a, b) for a in range(4) for b in range(4) if a != b]
    raw = sorted((p[a, b], (a, b)) for a, b in pairs)
    running, expected = 0.0, {}
    for index, (value, pair) in enumerate(raw):
        running = max(running, min(1.0, (len(pairs) - index) * value))
        expected[pair] = running
    assert {pair: adjusted[pair] for pair in pairs} == pytest.approx(expected)
    # the bootstrap: the same seed, the same replicates; each replicate's ranks are a ranking
    one = bootstrap_ranks(scores, True, replicates=200, seed=7)
    assert np.array_equal(one.ranks, bootstrap_ranks(scores, True, replicates=200, seed=7).ranks)
    assert np.allclose(np.sort(one.ranks, axis=1), [1, 2, 3, 4])
    rankings = protocol_rankings(scores, higher_is_better=True)
    assert list(rankings["mean, then rank"]) == list(rank(scores.mean(axis=1), True))


def test_adding_a_method_scores_only_it_and_comparisons_at_once_share_the_cache(em, capsys):
    cache = em / "shared-cache"
    base = ["compare", "--challenge", "em", "--gt", str(em / "gt.npy"), "--cache", str(cache)]
    base += ["--reports", str(em / "reports"), "--replicates", "100"]
    first = [str(em / "blur1.npy"), str(em / "blur2.npy")]
    # two comparisons of the same methods at once, in processes of their own, on one cache
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "unetbench", *base, *first], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.wait(timeout=600) == 0
    entries = sorted(cache.glob("*.json"))
    assert len(entries) == 2 and all(json.loads(e.read_text())["per_image"] for e in entries)
    assert not list(cache.glob("*.tmp*")) and not list(cache.glob(".*"))
    capsys.readouterr()
    assert main([*base, *first, str(em / "blur3.npy")]) == 0
    out = capsys.readouterr().out
    assert out.count("scores from the cache") == 2 and "scoring blur3 (12 images)" in out
    assert len(list(cache.glob("*.json"))) == 3


def test_a_comparison_renders_again_from_its_record(em, capsys):
    assert _compare(em, str(em / "blur1.npy"), str(em / "blur3.npy")) == 0
    folder = _latest(em).parent
    report = folder.parent / f"{folder.name}.md"
    before = report.read_text()
    assert main(["report", str(folder)]) == 0
    assert report.read_text() == before


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--challenge", "em", "--gt", "GT", "A"], "compare needs at least two methods, got 1"),
        (["--challenge", "em", "--gt", "GT", "x=A", "x=B"], "method name 'x' is given twice"),
        (["--challenge", "eem", "--gt", "GT", "A", "B"], "'--challenge': 'eem' is not one of 'em', 'ctc'"),
        (
            ["--challenge", "em", "--gt", "GT", "A", "SMALL"],
            "images of shape (12, 48, 48), the ground truth's",
        ),
        (["--challenge", "em", "--gt", "GT", "A", "OUTSIDE"], "values outside [0, 1] or not finite"),
        (["--challenge", "em", "--gt", "GT", "A", "NAN"], "values outside [0, 1] or not finite"),
        (["--challenge", "ctc", "--gt", "CELLS", "EMPTY", "EMPTY2"], "no CTC results"),
        (["RUN_WITHOUT", "RUN_WITHOUT2"], "the run kept no predictions"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(em, tmp_path, capsys, arguments, says):
    a = np.load(em / "blur1.npy")
    np.save(tmp_path / "small.npy", a[:, :48, :48])
    np.save(tmp_path / "outside.npy", a * 2)
    nan = a.copy()
    nan[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty2").mkdir()
    synthetic.write_cells(tmp_path / "cells", seed=0, samples=4, height=64, width=64, look="phase")
    spec_file = write_spec(tmp_path / "tiny.toml", tiny_spec(iterations=1, **{"report.overlays": 0}))
    for name in ("run-without", "run-without2"):
        assert (
            main(["run", str(spec_file), "--out", str(tmp_path / name), "--reports", str(tmp_path / "r")])
            == 0
        )
        (tmp_path / name / "predictions.h5").unlink()
    places = {
        "GT": em / "gt.npy",
        "A": em / "blur1.npy",
        "B": em / "blur2.npy",
        "SMALL": tmp_path / "small.npy",
        "OUTSIDE": tmp_path / "outside.npy",
        "NAN": tmp_path / "nan.npy",
        "CELLS": tmp_path / "cells",
        "EMPTY": tmp_path / "empty",
        "EMPTY2": tmp_path / "empty2",
        "RUN_WITHOUT": tmp_path / "run-without",
        "RUN_WITHOUT2": tmp_path / "run-without2",
    }

    def placed(word: str) -> str:
        name, sep, rest = word.partition("=")
        return f"{name}={places.get(rest, rest)}" if sep else str(places.get(word, word))

    capsys.readouterr()
    command = ["compare", *(placed(w) for w in arguments), "--reports", str(tmp_path / "out")]
    usage = "is not one of" in says  # a value outside an option's choices: a usage error, as typer's own
    assert main([*command, "--cache", str(tmp_path / "cache")]) == (2 if usage else 1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_runs_and_an_ablations_out_of_fold_stacks_are_methods(tmp_path, capsys):
    spec = tiny_spec(iterations=2, **{"report.overlays": 0, "report.directory": str(tmp_path / "reports")})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    ablate = ["ablate", str(spec_file), "--folds", "3", "--no-weightmap", "--out", str(tmp_path / "abl")]
    assert main([*ablate, "--no-progress"]) == 0
    capsys.readouterr()
    command = [
        "compare",
        str(tmp_path / "abl"),
        "--reports",
        str(tmp_path / "reports"),
        "--replicates",
        "200",
    ]
    assert main([*command, "--cache", str(tmp_path / "cache")]) == 0
    found = (tmp_path / "reports" / "quickstart").glob("compare-*")
    comparison = read_comparison(next(p for p in found if p.is_dir()))
    assert [m.name for m in comparison.methods] == ["baseline", "no-weightmap"]
    assert len(comparison.images) == 6  # every labelled image, out of fold
    # the baseline's out-of-fold rand_error equals the ablation's own (crossval.json)
    crossval = json.loads((tmp_path / "abl" / "crossval.json").read_text())
    own = next(e for e in crossval["entries"] if e["variant"] == "baseline")["scores"]["rand_error"]
    assert comparison.methods[0].aggregate["rand_error"] == pytest.approx(own)
    # two runs of another split are other images: one line
    runs = [str(tmp_path / "abl" / p.name) for p in sorted((tmp_path / "abl").glob("baseline-fold*"))[:2]]
    assert main(["compare", *runs, "--reports", str(tmp_path / "x"), "--cache", str(tmp_path / "c")]) == 1
    assert "every method must score the same images" in capsys.readouterr().err


def test_an_ablation_beside_prediction_files_on_one_ground_truth(tmp_path, capsys):
    """The committed comparison's form: an ablation's variants and a trivial method (the raw image as
    P(cell)) on the labels file the runs read; labels of other images are one line."""
    import dataclasses

    import tifffile

    synth = ["data", "synth", "synthetic-em", "--out", str(tmp_path / "em"), "--samples", "6"]
    assert main([*synth, "--height", "128", "--width", "128"]) == 0
    spec = tiny_spec(iterations=2, **{"report.overlays": 0, "report.directory": str(tmp_path / "reports")})
    data = dataclasses.replace(spec.data, dataset="isbi2012", root=str(tmp_path / "em"), synthetic=None)
    spec_file = write_spec(tmp_path / "em.toml", dataclasses.replace(spec, data=data))
    ablate = ["ablate", str(spec_file), "--folds", "3", "--no-tta", "--set", "inference.tta=flips"]
    assert main([*ablate, "--out", str(tmp_path / "abl"), "--no-progress"]) == 0
    raw = tifffile.imread(tmp_path / "em" / "train-volume.tif").astype(np.float32) / 255
    np.save(tmp_path / "raw.npy", raw)
    labels = str(tmp_path / "em" / "train-labels.tif")
    command = [
        "compare",
        "--challenge",
        "em",
        "--gt",
        labels,
        str(tmp_path / "abl"),
        f"raw={tmp_path / 'raw.npy'}",
    ]
    command += [
        "--reports",
        str(tmp_path / "reports"),
        "--cache",
        str(tmp_path / "cache"),
        "--replicates",
        "200",
    ]
    capsys.readouterr()
    assert main(command) == 0
    comparison = read_comparison(
        next(p for p in (tmp_path / "reports" / "em").glob("compare-*") if p.is_dir())
    )
    assert [m.name for m in comparison.methods] == ["raw", "baseline", "no-tta"]
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((6, 128, 128), np.uint8))  # labels of other images
    command[4] = str(other)
    assert main(command) == 1
    assert "whose labels are not those of --gt" in capsys.readouterr().err
