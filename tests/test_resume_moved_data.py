"""Resuming a run whose own data (``folder:``/``npz:``) moved since it started, and λ_max without PyTorch's vmap
fallback warning.

A moved folder used to be a dead end: the resume said "does not exist; give folder:PATH", and the resume refused
``--dataset``. Now the resume takes the new place when it holds the data the run recorded (data.json's content
digest), records it in config.yaml and data.json, and continues bit for bit as an uninterrupted run does: the
truth here is an uninterrupted run on the data at its first place. Tiny sizes throughout (8x8 images, C=4, 3
cells, 2 epochs): seconds each.
"""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import invoke, snapshot, tiny_config
from robustdarts import runs as runs_module
from robustdarts.config import TrainConfig, build
from robustdarts.runs import RunDir
from robustdarts.search.loop import Search
from robustdarts.train import Train
from robustdarts.zoo import get_genotype

pytestmark = pytest.mark.usefixtures("own_data_isolated")  # conftest: decode cache here, nothing remembered

TINY_TRAIN = ["--layers", "3", "--channels", "4", "--batch-size", "8", "--epochs", "1", "--set", "image_size=8",
              "--no-progress"]


def image_folder(root: Path, per_class: int = 12) -> None:
    """Three classes of 8x8 gray PNGs (a class-bright square on noise), no test/: 1/6 of each class held out."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (8, 8), dtype=np.uint8)
            img[2:6, 2:6] = 60 + 60 * label
            Image.fromarray(img).save(root / name / f"{i:02d}.png")


def metric_values(run: Path) -> list[dict]:
    """Every number of the per-epoch records except the clock's."""
    return [{k: v for k, v in r.items() if "seconds" not in k and "time" not in k}
            for r in RunDir(run).read_metrics()]


def final_alphas(run: Path) -> dict[str, torch.Tensor]:
    archive, _ = RunDir(run).load_archive()
    return archive[max(archive)]


def test_search_resumed_with_the_moved_folder_is_the_uninterrupted_search(tmp_path):
    data, moved, work = tmp_path / "mine", tmp_path / "elsewhere" / "mine2", tmp_path / "work"
    image_folder(data)
    work.mkdir()
    cfg = tiny_config(dataset=f"folder:{data}", epochs=2, limit_images=None)
    Search(cfg, work / "full", progress=False).run()
    Search(cfg, work / "cut", progress=False).run(stop_after=0)  # interrupted after epoch 1 of 2
    runs_module.release(work / "cut")
    moved.parent.mkdir()
    shutil.move(data, moved)

    # The plain resume says how to go on, and changes nothing.
    before = snapshot(work)
    code, out = invoke(["search", "--resume", "cut", "--no-progress"], work)
    assert code == 2 and "Traceback" not in out and len(out.strip().splitlines()) <= 3, out
    text = " ".join(out.split())
    assert f"folder {data.resolve()}" in text and "does not exist" in text, text
    assert "if it moved, pass --dataset folder:NEW_PATH with --resume" in text, text
    assert snapshot(work) == before

    code, out = invoke(["search", "--resume", "cut", "--dataset", f"folder:{moved}", "--no-progress", "--json"],
                       work)
    assert code == 0, out
    runs_module.release(work / "cut")
    assert json.loads(out.strip().splitlines()[-1])["epochs"] == 2
    full_alphas, cut_alphas = final_alphas(work / "full"), final_alphas(work / "cut")
    assert full_alphas.keys() == cut_alphas.keys()
    for key in full_alphas:
        assert torch.equal(full_alphas[key], cut_alphas[key]), key
    assert (work / "full" / "genotype.json").read_text() == (work / "cut" / "genotype.json").read_text()
    assert metric_values(work / "full") == metric_values(work / "cut") and len(metric_values(work / "cut")) == 2

    # The new place is the run's now: config.yaml and data.json name it, every other field as it was.
    config = yaml.safe_load((work / "cut" / "config.yaml").read_text())
    original = yaml.safe_load((work / "full" / "config.yaml").read_text())
    assert config == {**original, "dataset": f"folder:{moved.resolve()}"}
    record = json.loads((work / "cut" / "data.json").read_text())
    assert record == {**json.loads((work / "full" / "data.json").read_text()),
                      "dataset": f"folder:{moved.resolve()}"}
    # ... so a later resume needs no --dataset, and train from the run finds the data by itself.
    code, out = invoke(["search", "--resume", "cut", "--no-progress"], work)
    assert code == 0, out
    runs_module.release(work / "cut")
    code, out = invoke(["train", "cut", *TINY_TRAIN, "--out", "trained", "--json"], work)
    assert code == 0, out
    trained = json.loads((work / "trained" / "data.json").read_text())
    assert trained["dataset"] == f"folder:{moved.resolve()}" and trained["digest"] == record["digest"]


def test_other_data_at_the_new_place_is_refused_and_nothing_changes(tmp_path):
    data, work = tmp_path / "mine", tmp_path / "work"
    image_folder(data)
    work.mkdir()
    cfg = tiny_config(dataset=f"folder:{data}", epochs=2, limit_images=None)
    Search(cfg, work / "cut", progress=False).run(stop_after=0)
    runs_module.release(work / "cut")
    other = tmp_path / "other"
    shutil.copytree(data, other)
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(other / "a" / "00.png")  # one image differs
    before = snapshot(work)
    code, out = invoke(["search", "--resume", "cut", "--dataset", f"folder:{other}", "--no-progress"], work)
    assert code == 2 and "Traceback" not in out, out
    assert "changed since" in " ".join(out.split()), out
    code, out = invoke(["search", "--resume", "cut", "--dataset", "synthetic", "--no-progress"], work)
    assert code == 2 and "dataset cannot change it" in " ".join(out.split()), out
    assert snapshot(work) == before
    # The same place, written another way, is no change.
    code, out = invoke(["search", "--resume", "cut", "--dataset", f"folder:{data}/../mine", "--no-progress"], work)
    assert code == 0, out
    assert yaml.safe_load((work / "cut" / "config.yaml").read_text())["dataset"] == f"folder:{data.resolve()}"


def test_python_api_resume_takes_a_moved_npz(tmp_path):
    import robustdarts

    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (40, 8, 8), dtype=np.uint8)
    y = np.arange(40) % 4
    first, moved = tmp_path / "arrays.npz", tmp_path / "moved" / "arrays.npz"
    np.savez(first, x_train=x[:32], y_train=y[:32], x_test=x[32:], y_test=y[32:])
    fields = dict(space="s3", dataset=f"npz:{first}", epochs=2, batch_size=8, init_channels=4, layers=3,
                  image_size=8, leakage_every=0, seed=0)
    full = robustdarts.search(out=tmp_path / "full", **fields)
    Search(RunDir(tmp_path / "full").load_config(type(full.config)), tmp_path / "cut",
           progress=False).run(stop_after=0)
    runs_module.release(tmp_path / "cut")
    moved.parent.mkdir()
    shutil.move(first, moved)
    with pytest.raises(robustdarts.RobustDartsError, match="if it moved, pass --dataset npz:NEW_FILE"):
        robustdarts.search(resume=tmp_path / "cut")
    resumed = robustdarts.search(resume=tmp_path / "cut", dataset=f"npz:{moved}")
    assert resumed.genotype == full.genotype
    assert [r["val_acc"] for r in resumed.metrics] == [r["val_acc"] for r in full.metrics]
    assert resumed.config.dataset == f"npz:{moved.resolve()}"


def test_training_resumed_with_the_moved_folder_is_the_uninterrupted_training(tmp_path):
    data, moved, work = tmp_path / "mine", tmp_path / "moved", tmp_path / "work"
    image_folder(data)
    work.mkdir()
    cfg = build(TrainConfig, dict(genotype="darts_v2", dataset=f"folder:{data}", epochs=2, batch_size=8,
                                  init_channels=4, layers=3, image_size=8, seed=1))
    geno = get_genotype("darts_v2")
    full = Train(cfg, geno, work / "full", progress=False).run()
    Train(cfg, geno, work / "cut", progress=False).run(stop_after=0)
    runs_module.release(work / "cut")
    shutil.move(data, moved)
    code, out = invoke(["train", "darts_v2", "--resume", "cut", "--no-progress"], work)
    assert code == 2 and "if it moved, pass --dataset folder:NEW_PATH with --resume" in " ".join(out.split()), out
    code, out = invoke(["train", "darts_v2", "--resume", "cut", "--dataset", f"folder:{moved}", "--no-progress",
                        "--json"], work)
    assert code == 0, out
    resumed = json.loads(out.strip().splitlines()[-1])
    assert resumed["final_test_acc"] == full["final_test_acc"]
    assert metric_values(work / "full") == metric_values(work / "cut")
    assert yaml.safe_load((work / "cut" / "config.yaml").read_text())["dataset"] == f"folder:{moved.resolve()}"


def test_eigenvalue_measurement_shows_no_vmap_fallback_warning(monkeypatch):
    """The search's supernet (channels_last activations) sends adaptive_avg_pool2d's backward through vmap's
    fallback, which warns "There is a performance drop ... file us an issue on GitHub". With the filter taken away
    the warning appears (so this setup does reach it) and λ_max is bit for bit the filtered one."""
    from robustdarts.analysis import hessian

    search = Search(tiny_config(hessian_every=0), None, progress=False)
    assert search.cfg.channels_last
    batch = next(search.val_stream)

    def measure() -> tuple[float, list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = hessian.arch_hessian(search.supernet, search.arch, [batch], method="exact")["eigenvalue"]
        return value, [str(w.message) for w in caught if "performance drop" in str(w.message)]

    value, seen = measure()
    assert seen == []
    monkeypatch.setattr(hessian, "VMAP_FALLBACK_WARNING", "a message torch never writes")
    unfiltered, seen = measure()
    assert seen and "aten::as_strided_" in seen[0] and unfiltered == value


def test_search_with_per_epoch_eigenvalue_shows_no_vmap_fallback_warning(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Search(tiny_config(hessian_every=1), tmp_path / "run", progress=False).run()
    assert not [w for w in caught if "performance drop" in str(w.message)]
    assert [r["eigenvalue"] > 0 for r in RunDir(tmp_path / "run").read_metrics()] == [True]


def test_darts_pt_derives_a_finished_run_whose_folder_moved(tmp_path):
    """DARTS-PT's measurements read the search's data: a plain derive of a run whose folder moved says how to go
    on and changes nothing; with --dataset at the new place (same content digest) it derives what the run derived
    on its data in place, and records the place. Other policies take no --dataset."""
    data, moved, work = tmp_path / "mine", tmp_path / "elsewhere" / "mine2", tmp_path / "work"
    image_folder(data)
    work.mkdir()
    Search(tiny_config(dataset=f"folder:{data}", limit_images=None), work / "run", progress=False).run()
    runs_module.release(work / "run")
    shutil.copytree(work / "run", work / "copy")
    pt = ["--policy", "darts-pt", "--tune-epochs", "0", "--val-images", "8", "--json", "--no-progress"]
    code, out = invoke(["derive", "run", *pt], work)
    assert code == 0, out
    in_place = json.loads(out.strip().splitlines()[-1])["genotype"]
    moved.parent.mkdir()
    shutil.move(data, moved)

    before = snapshot(work)
    code, out = invoke(["derive", "copy", *pt], work)
    text = " ".join(out.split())
    assert code == 2 and "if it moved, pass --dataset folder:NEW_PATH to derive" in text, out
    assert snapshot(work) == before
    code, out = invoke(["derive", "copy", "--dataset", f"folder:{data}", "--policy", "darts"], work)
    assert code == 2 and "--dataset applies to --policy darts-pt only" in " ".join(out.split()), out

    code, out = invoke(["derive", "copy", *pt, "--dataset", f"folder:{moved}"], work)
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["genotype"] == in_place
    assert yaml.safe_load((work / "copy" / "config.yaml").read_text())["dataset"] == f"folder:{moved.resolve()}"
