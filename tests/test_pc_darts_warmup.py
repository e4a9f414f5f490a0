"""PC-DARTS' arch warmup follows the run's length under a sizes preset (issue 25, fidelity 4).

The truth is the paper's proportion: yuhuixu1993/PC-DARTS ``train_search.py`` trains the weights alone while
``epoch < 15`` of its 50 epochs (spec L §3 row 7). A sizes preset shrinks the run, so the warmup becomes
round(15·E/50); epochs or a warmup the user chose stay as chosen, and a run no longer than its warmup says so.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import tiny_config
from robustdarts.config import PRESETS as SIZES
from robustdarts.methods import search_config
from robustdarts.search.loop import Search

PAPER_WARMUP, PAPER_EPOCHS = 15, 50


def _pc_darts(**fields):
    return search_config(dict(method="pc-darts", dataset="synthetic", **fields))


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_a_sizes_preset_scales_the_warmup_with_the_run(preset):
    epochs = SIZES[preset]["search"]["epochs"]
    cfg = _pc_darts(preset=preset)
    assert cfg.epochs == epochs
    assert cfg.method_options["arch_warmup"] == round(PAPER_WARMUP * epochs / PAPER_EPOCHS)  # tiny: 2 of 6
    lhd = _pc_darts(preset=preset, space="lhd")  # LHD's copy: the same 15 of 50
    assert lhd.method_options["arch_warmup"] == round(PAPER_WARMUP * epochs / PAPER_EPOCHS)


def test_the_users_epochs_or_warmup_are_kept():
    assert _pc_darts().method_options["arch_warmup"] == PAPER_WARMUP  # the paper's run
    assert _pc_darts(preset="paper").method_options["arch_warmup"] == PAPER_WARMUP
    assert _pc_darts(preset="tiny", epochs=10).method_options["arch_warmup"] == PAPER_WARMUP  # epochs chosen
    assert _pc_darts(preset="tiny", method_options={"arch_warmup": 4}).method_options["arch_warmup"] == 4
    assert _pc_darts(preset="tiny", method_options={"arch_warmup": 15}).method_options["arch_warmup"] == 15


def test_a_run_shorter_than_its_warmup_warns_once_with_the_fix():
    cfg = tiny_config("pc-darts", "s3", init_channels=8, epochs=2, limit_images=16)  # warmup 15 > 2 epochs
    with pytest.warns(UserWarning) as caught:
        Search(cfg, None, progress=False).run()
    messages = [str(w.message) for w in caught if "arch_warmup" in str(w.message)]
    assert messages == ["pc-darts never trains α in this run: its arch_warmup is 15 epochs and the run has 2; set "
                        "method.arch_warmup below 2 (e.g. --set method.arch_warmup=1, the paper's 15 of 50 epochs "
                        "scaled to this run)."]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warmup shorter than the run: nothing to say
        Search(tiny_config("pc-darts", "s3", init_channels=8, epochs=2, limit_images=16,
                           method_options={"arch_warmup": 1}), None, progress=False)


def test_alpha_is_trained_from_the_scaled_warmup_at_the_tiny_preset():
    """``--preset tiny`` (6 epochs) with only the image sizes shrunk further: α stays at its initial values through
    epochs 0 and 1 (no arch step), and moves from epoch 2 on."""
    cfg = search_config(dict(method="pc-darts", space="s3", dataset="synthetic", preset="tiny", batch_size=8,
                             init_channels=8, layers=3, image_size=8, limit_images=16, leakage_every=0))
    assert (cfg.epochs, cfg.method_options["arch_warmup"]) == (6, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = Search(cfg, None, progress=False)
    initial = search.arch.as_dict()
    search.run()
    for epoch in range(6):
        moved = any(not torch.equal(search.archive[epoch][k], initial[k]) for k in initial)
        assert moved == (epoch >= 2), epoch
