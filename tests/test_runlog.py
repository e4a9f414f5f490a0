"""``search --log tensorboard``: event files that tensorboard's own reader reads back as metrics.jsonl and the α
archive, a writer that cannot fail a search, and a missing package refused before anything is written."""

import json
import sys

import pytest
from typer.testing import CliRunner

from robustdarts.cli import app
from robustdarts.errors import RobustDartsError
from robustdarts.runs import RunDir

TINY = ["--space", "s3", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "8", "--channels", "4",
        "--layers", "3", "--set", "image_size=8", "--set", "limit_images=32", "--set", "leakage_every=0",
        "--seed", "0", "--json"]


def test_tensorboard_events_mirror_metrics_and_alpha(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["search", *TINY, "--out", str(out), "--log", "tensorboard"])
    assert result.exit_code == 0, result.output
    records = RunDir(out).read_metrics()
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for key in ("train_loss", "val_loss", "train_acc", "val_acc", "skip_normal", "entropy_normal"):
        assert f"metrics/{key}" in tags["scalars"], key
    for record in records:  # every numeric field of every epoch, at step = epoch
        for key, value in record.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            logged = {e.step: e.value for e in events.Scalars(f"metrics/{key}")}
            assert logged[record["epoch"]] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    archive, _ = RunDir(out).load_archive()
    for k, row in enumerate(archive[1]["alpha/normal"]):
        histogram = events.Histograms(f"alpha/normal/edge_{k:02d}")
        assert [h.step for h in histogram] == [0, 1]
        assert histogram[-1].histogram_value.num == len(row)
        assert histogram[-1].histogram_value.min == pytest.approx(float(row.min()))
        assert histogram[-1].histogram_value.max == pytest.approx(float(row.max()))
    images = events.Images("weights/normal")
    assert [i.step for i in images] == [0, 1] and images[0].height == 14 * 12 and images[0].width == 3 * 12
    assert json.loads(result.output.strip().splitlines()[-1])["epochs"] == 2


def test_a_failing_writer_is_a_warning_and_the_search_goes_on(tmp_path):
    pytest.importorskip("tensorboard")
    from conftest import tiny_config

    from robustdarts.runlog import make_logger
    from robustdarts.search.loop import Search

    search = Search(tiny_config("darts", "s3", epochs=2), tmp_path / "run", progress=False)
    logger = make_logger("tensorboard", search.run_dir.path)

    def broken(*args, **kwargs):
        raise OSError("disk full")
    logger.writer.add_scalar = broken
    search.epoch_hooks = (logger,)
    with pytest.warns(RuntimeWarning, match="disk full"):
        search.run()
    logger.close()
    assert search.epoch == 2 and len(search.run_dir.read_metrics()) == 2


def test_missing_tensorboard_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["search", *TINY, "--out", str(out), "--log", "tensorboard"])
    assert isinstance(result.exception, RobustDartsError)
    assert "pip install 'robustdarts[tensorboard]'" in str(result.exception)
    assert not out.exists()
