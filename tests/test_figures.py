"""The report's figures: files of the expected size, the overlay's error colours where the errors are, and
the forest plot's red for a resolved effect only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from unetbench.ablation import AblationDir
from unetbench.ablation.summary import summarise
from unetbench.records.run_folder import RunDir
from unetbench.report.figures import forest_figure, overlay_figure, training_curve_figure

from .helpers import REPORTS

RED, BLUE = (255, 51, 51), (51, 102, 255)  # false cell (1.0, 0.2, 0.2), missed cell (0.2, 0.4, 1.0)
TAB_RED = (214, 39, 40)  # matplotlib's tab:red
TAB_ORANGE = (255, 127, 14)  # matplotlib's tab:orange


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _where(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.argwhere(np.all(pixels == colour, axis=-1))


def test_the_overlay_paints_false_cells_red_and_missed_cells_blue_in_the_last_panel(tmp_path):
    truth = np.zeros((40, 40), dtype=np.uint8)
    truth[:, 20:] = 1  # cell on the right half
    probability = np.zeros((40, 40), dtype=np.float32)
    probability[:20, :] = 0.9  # predicted cell on the top half
    sample = SimpleNamespace(image=np.full((40, 40), 0.5, dtype=np.float32), target=truth)
    path = overlay_figure(sample, probability, tmp_path / "overlay.png", title="slice 0")
    pixels = _pixels(path)
    assert pixels.shape == (330, 1200, 3)  # 12 x 3.3 inches at 100 dpi
    red, blue = _where(pixels, RED), _where(pixels, BLUE)
    assert len(red) > 100 and len(blue) > 100
    # both in the fourth panel; red (top left quarter: cell predicted, none there) above and left of
    # blue (bottom right quarter: a cell that was missed)
    assert red[:, 1].min() > 900 and blue[:, 1].min() > 900
    assert red[:, 0].mean() < blue[:, 0].mean() and red[:, 1].mean() < blue[:, 1].mean()
    assert not list(tmp_path.glob("*.tmp*")) and sorted(p.name for p in tmp_path.iterdir()) == ["overlay.png"]


def test_the_training_curve_of_a_committed_run(tmp_path):
    record = RunDir(REPORTS / "em-cpu" / "schedule" / "E1").read_record()
    pixels = _pixels(training_curve_figure(record, tmp_path / "curve.png"))
    assert pixels.shape == (385, 770, 3)  # 7 x 3.5 inches at 110 dpi
    assert len(_where(pixels, (31, 119, 180))) > 50  # tab:blue, the loss
    assert len(_where(pixels, (255, 127, 14))) > 50  # tab:orange, the validation


def test_the_forest_plot_is_red_only_for_a_resolved_effect_of_the_primary_family(tmp_path):
    """In the committed em-cpu ablation no Rand error effect (the primary family) is resolved after Holm;
    no-tta's pixel error interval excludes 0 unadjusted: orange, exploratory, never red."""
    directory = AblationDir(REPORTS / "em-cpu" / "ablation-305c8407")
    summary = summarise(*directory.read_runs(), directory.read_crossval())
    exploratory = _pixels(forest_figure(summary, "pixel_error", tmp_path / "pixel.png"))
    primary = _pixels(forest_figure(summary, "rand_error", tmp_path / "rand.png"))
    assert len(_where(exploratory, TAB_ORANGE)) > 20 and len(_where(exploratory, TAB_RED)) == 0
    assert len(_where(primary, TAB_RED)) == 0 and len(_where(primary, TAB_ORANGE)) == 0


def test_a_resolved_effect_of_the_primary_family_is_red(tmp_path):
    from .test_ablation_report import known_answers

    directory = known_answers(tmp_path / "known")
    summary = summarise(*directory.read_runs())
    assert len(_where(_pixels(forest_figure(summary, "rand_error", tmp_path / "r.png")), TAB_RED)) > 20
