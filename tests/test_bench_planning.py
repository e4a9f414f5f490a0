"""Issue 25: what bench plan shows is what runs, and what it cannot run it refuses in one sentence.

Fidelity: LHD searches SVHN without augmentation (its search/preproc.py) wherever an LHD search runs; ``bench plan``
shows and costs LHD's evaluation recipe (seed 0, as its train.py) for LHD cells, the one ``bench run`` applies;
the memory estimate counts PC-DARTS' partial channels (against the bytes autograd really saves); the plan counts
DARTS-PT's measurements and fine-tuning (against the calls of its real schedule). Bad grids: outsized networks,
seed counts and YAML alias bombs, a selection nothing can score, empty values, labels with control characters or
of 300 characters end in exit 2, one sentence, nothing written.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import invoke
from robustdarts.bench import expand, grid_from_dict, load_grid, make_plan
from robustdarts.bench.plan import Plan
from robustdarts.config import SearchConfig, load_yaml
from robustdarts.methods import search_config

# LHD search/preproc.py, data_transforms: CIFAR-10 and CIFAR-100 train with RandomCrop(32, 4) and a horizontal flip,
# SVHN with no transform at all.
LHD_SEARCH_AUGMENTS = {"cifar10": True, "cifar100": True, "svhn": False}
# LHD eval/<ds>/train.py + .sh (spec L §2.3): the evaluation recipe's numbers.
LHD_EVAL = dict(seed=0, epochs=600, batch_size=64, lr=0.025, weight_decay=3e-4, auxiliary_weight=0.4)


def lhd_genotype(seed: int = 0):
    """An LHD genotype from random architecture values, derived by the space's own rule."""
    from robustdarts.archparams import ArchParams
    from robustdarts.discretize import derive
    from robustdarts.relax import mixing_weights
    from robustdarts.spaces import get_space

    space = get_space("lhd")
    arch = ArchParams(space, generator=torch.Generator().manual_seed(seed))
    weights = mixing_weights(space, dict(arch.alphas), dict(arch.betas))
    return derive(space, {k: v.detach() for k, v in weights.items()})


# ---- fidelity 2: LHD searches SVHN without augmentation ---------------------------------------------------------
@pytest.mark.parametrize("method", ["darts", "pc-darts", "sp-darts", "gdas"])
def test_every_lhd_search_augments_as_lhd_preproc(method):
    for dataset, augments in LHD_SEARCH_AUGMENTS.items():
        assert search_config({"method": method, "space": "lhd", "dataset": dataset}).augment is augments, dataset
    # Only LHD's recipe says so; an explicit value wins, and DARTS spaces keep crop and flip on SVHN.
    assert search_config({"method": method, "space": "lhd", "dataset": "svhn", "augment": True}).augment is True
    assert search_config({"method": method, "space": "darts", "dataset": "svhn"}).augment is True


def test_lhd_grid_searches_follow_the_space_recipe_per_dataset():
    grid = grid_from_dict({"name": "lhd-like", "methods": ["darts", "pc-darts"], "spaces": ["lhd"],
                           "datasets": ["cifar10", "svhn"], "seeds": 2, "train": False})
    cells = expand(grid)
    assert len(cells) == 8
    for c in cells:
        assert c.search["augment"] is LHD_SEARCH_AUGMENTS[c.dataset], (c.method, c.dataset)
    # A grid that sets augment keeps it, at any layer.
    for where in ({"search": {"augment": True}}, {"datasets": [{"dataset": "svhn", "search": {"augment": True}}]}):
        grid = grid_from_dict({"name": "lhd-aug", "methods": ["darts"], "spaces": ["lhd"], "datasets": ["svhn"],
                               "seeds": 1, "train": False, **where})
        assert [c.search["augment"] for c in expand(grid)] == [True], where


def test_cli_search_on_svhn_records_no_augmentation_in_config_yaml(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    (tmp_path / "svhn").mkdir()
    scipy_io.savemat(tmp_path / "svhn" / "train_32x32.mat",
                     {"X": rng.integers(0, 256, (32, 32, 3, 40), dtype=np.uint8),
                      "y": rng.integers(1, 11, (40, 1), dtype=np.uint8)})
    tiny = ["--space", "lhd", "--dataset", "svhn", "--data-dir", tmp_path, "--layers", "3", "--channels", "4",
            "--batch-size", "8", "--epochs", "1", "--set", "image_size=8", "--set", "limit_images=32",
            "--set", "leakage_every=0", "--no-progress"]
    code, output = invoke(["search", *tiny, "--out", tmp_path / "run"], tmp_path)
    assert code == 0, output
    assert load_yaml(SearchConfig, tmp_path / "run" / "config.yaml").augment is False
    code, output = invoke(["search", *tiny, "--set", "augment=true", "--dry-run", "--json"], tmp_path)
    assert code == 0 and json.loads(output)["augment"] is True, output


# ---- fidelity 5: the plan's trainings are the run's ---------------------------------------------------------------
def test_plan_holds_the_training_recipe_bench_run_applies(tmp_path):
    from robustdarts.bench.cell import train_config
    from robustdarts.eval_recipe import genotype_fields

    grids = [
        {"name": "lhd", "methods": ["darts"], "spaces": ["lhd"], "datasets": ["cifar10", "svhn"], "seeds": [3, 4],
         "conditions": ["default", "lhd:base", "lhd:1m"], "train": {"limit_test": 100}},
        {"name": "darts", "methods": ["darts"], "spaces": ["s3"], "datasets": ["cifar10"], "seeds": [3, 4],
         "conditions": ["default"], "train": {"limit_test": 100}},
    ]
    lhd = lhd_genotype()
    from robustdarts.zoo import get_genotype

    checked = 0
    for data in grids:
        grid = grid_from_dict(data)
        plan = Plan(grid, expand(grid), {})  # what make_plan holds, without the cost (seconds of FLOP probes)
        for cell in plan.cells:
            genotype = lhd if cell.space == "lhd" else get_genotype("darts_v2")
            for k in cell.conditions:
                ran = vars(train_config(k, genotype, tmp_path / "genotype.json"))
                own = genotype_fields(genotype.kind, k.condition if k.policy == "lhd" else None)
                differs = {f for f in ran if ran[f] != k.train[f]} - {"genotype", "data_dir"}
                assert differs <= set(own), (cell.space, k.label, {f: (k.train[f], ran[f]) for f in differs})
                if cell.space == "lhd":
                    assert {f: ran[f] for f in LHD_EVAL} == LHD_EVAL  # seed 0 whatever the search's seed
                    assert ran["drop_path"] <= k.train["drop_path"] and ran["init_channels"] >= k.train["init_channels"]
                    assert ran["augment"] is (cell.dataset != "svhn")
                    assert ran["layers"] == (25 if k.condition == "1m" else 20)
                else:  # DARTS' recipe: the TrainConfig defaults, trained with the search's seed
                    assert ran["seed"] == cell.seed and ran["batch_size"] == 96 and ran["drop_path"] == 0.2
                checked += 1
        recipes = plan.recipes()
        if data["name"] == "lhd":
            assert any("cifar10, lhd:1m: 600 epochs, batch 64, 25 cells, C=36 or wider" in r for r in recipes), recipes
            assert all("seed 0" in r for r in recipes) and any("svhn" in r and "no crop" in r for r in recipes)
    assert checked == 2 * 2 * 3 + 2
    # The command prints those lines: an LHD grid's trainings read LHD's recipe, not DARTS' (batch 96, 20 cells
    # of C=36 at drop path 0.2, with the search's seed) as they did.
    grid = tmp_path / "lhd.yaml"
    grid.write_text(yaml.safe_dump({"name": "lhd-cli", "methods": ["darts"], "spaces": ["lhd"], "datasets": ["svhn"],
                                    "seeds": [3], "conditions": ["lhd:base"],
                                    "search": {"epochs": 1, "layers": 3, "init_channels": 4, "image_size": 8},
                                    "train": {}}))  # LHD's evaluation recipe, nothing changed (as the preset)
    code, output = invoke(["bench", "plan", grid], tmp_path)
    text = " ".join(output.split())
    assert code == 0 and "trainings of lhd on svhn, lhd:base: 600 epochs, batch 64, 20 cells, C=36" in text, text
    assert "no crop or flip, seed 0 (the recipe's)" in text and "batch 96" not in text, text


def test_memory_estimate_scales_with_partial_channels_as_the_saved_tensors_do():
    """supernet_estimate against the bytes autograd saves for backward (each storage once), for K = 1 and 4."""
    from robustdarts.archparams import ArchParams
    from robustdarts.memory import supernet_estimate
    from robustdarts.relax import mixing_weights
    from robustdarts.spaces import get_space
    from robustdarts.supernet import Supernet

    def saved_bytes(space, K):
        s = get_space(space)
        torch.manual_seed(0)
        net = Supernet(s, 8, 3, 10, 3, partial_channels=K)
        arch = ArchParams(s, generator=torch.Generator().manual_seed(0))
        weights = {k: v.detach() for k, v in mixing_weights(s, dict(arch.alphas), dict(arch.betas)).items()}
        storages: dict[int, int] = {}

        def pack(t):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.randn(4, 3, 8, 8), weights)
        return sum(storages.values()), sum(p.numel() for p in net.parameters())

    for space in ("darts", "lhd"):
        ratio = {}
        for K in (1, 4):
            measured, params = saved_bytes(space, K)
            est = supernet_estimate(space, 8, 3, 4, 8, 3, K)
            ratio[K] = est.activation_bytes / measured
            assert est.params >= params * 0.9  # the ops' weights shrink with K as the network's do
        # Counting K = 4 as K = 1 would over-estimate by about 3x against the network itself.
        assert 0.8 < ratio[4] / ratio[1] < 1.25, (space, ratio)


def test_pc_darts_paper_configuration_fits_a_24_gib_machine(monkeypatch):
    from robustdarts import memory

    monkeypatch.setattr(memory, "machine_memory", lambda device="cpu": (24 * memory.GIB, "this machine's"))
    # Dense (no recomputation), as the paper ran: K alone makes it fit, and without K the same search does not.
    paper = {"method": "pc-darts", "space": "darts", "dataset": "cifar10", "recompute": "none"}
    cfg = search_config(paper)
    assert (cfg.partial_channels, cfg.batch_size, cfg.init_channels, cfg.layers) == (4, 256, 16, 8)
    assert memory.check_search(cfg).total < 12 * memory.GIB  # the paper searched on one 11 GB 1080 Ti
    with pytest.raises(memory.RobustDartsError, match="more than this machine's 24 GiB"):
        memory.check_search(search_config({**paper, "partial_channels": 1}))
    # As a plain search resolves it (recompute auto), it runs without recomputing anything.
    assert memory.choose_recompute(search_config({**paper, "recompute": "auto"}))[0] == "none"


def test_plan_counts_darts_pt_work_as_its_schedule_runs_it():
    """darts_pt_work against the calls search/darts_pt.select makes on stand-ins for the supernet."""
    from robustdarts.bench.plan import darts_pt_work
    from robustdarts.search.darts_pt import Projection, select
    from robustdarts.spaces import get_space

    for name in ("s3", "darts", "nb201"):
        space = get_space(name)
        calls = {"measure": 0, "tune": 0}
        weights = {c: torch.full(space.alpha_shape(c), 1.0 / space.num_ops(c)) for c in space.cell_types}

        def measure(w):
            calls["measure"] += 1
            return float(calls["measure"] % 7)

        def tune(epochs):
            calls["tune"] += epochs

        select(space, Projection.empty(space), lambda: dict(weights), measure, tune,
               torch.Generator().manual_seed(0), allow_none=space.kind == "nb201", tune_epochs=5)
        measurements, epochs = darts_pt_work(name)
        assert (measurements, epochs) == (calls["measure"] + 1, calls["tune"]), name  # + the result's measurement

    base = {"name": "pt", "methods": ["darts"], "spaces": ["s3"], "datasets": ["synthetic"], "seeds": [0],
            "search": {"epochs": 1, "layers": 3, "init_channels": 4, "image_size": 8, "limit_images": 64,
                       "batch_size": 8}, "train": False}
    plain = make_plan(grid_from_dict({**base, "conditions": ["default"]}))
    pt = make_plan(grid_from_dict({**base, "conditions": ["default", "darts-pt"]}))
    cost, plain_cost = pt.costs[pt.cells[0].cell_id], plain.costs[plain.cells[0].cell_id]
    # 80 fine-tuning epochs of the search's 4 steps, besides 163 passes over the 32 validation images.
    assert cost.derive_steps == 80 * 4 and plain_cost.derive_steps == 0
    assert cost.seconds > plain_cost.seconds + 80 * 4 * 0.05
    assert pt.summary()["derive_tflop"] > 0 == plain.summary()["derive_tflop"]


# ---- bad grids: one sentence, exit 2, nothing written --------------------------------------------------------------
TINY = {"name": "tiny", "methods": ["darts"], "spaces": ["s3"], "datasets": ["synthetic"], "seeds": [0],
        "search": {"epochs": 1, "layers": 3, "init_channels": 4, "image_size": 8, "limit_images": 32,
                   "batch_size": 8, "leakage_every": 0},
        "train": {"epochs": 1, "layers": 3, "init_channels": 4, "image_size": 8, "limit_images": 32,
                  "batch_size": 8, "limit_test": 16, "valid_images": 8}}
# "Billion laughs": under 400 bytes whose last list holds 9^9 strings once every alias is expanded.
BOMB = "name: bomb\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
BAD_GRIDS = [
    ("search-channels", {"search": {**TINY["search"], "init_channels": 100000}},
     ["method darts, space s3", "the supernet needs", "GiB", "init_channels"]),
    ("train-channels", {"train": {**TINY["train"], "init_channels": 100000}},
     ["condition default, train", "the network needs", "GiB"]),
    ("search-layers", {"search": {**TINY["search"], "layers": 100000}}, ["method darts", "layers is 100000"]),
    ("train-layers", {"train": {**TINY["train"], "layers": 100000}}, ["condition default, train", "layers is 100000"]),
    ("seed-count", {"seeds": 1000000000}, ["seeds is a count of 1000000000", "10,000"]),
    ("sweep-count", {"seeds": 3, "methods": [{"method": "darts", "sweep": {"lr": [i / 1000 for i in range(1, 101)],
                                                                           "weight_decay": [1e-4 * i for i in
                                                                                            range(1, 101)]}}]},
     ["30,000 searches"]),
    ("alias-bomb", BOMB, ["expands to more than 100,000 YAML values"]),
    ("select-unscored", {"methods": ["darts", "beta-darts"], "train": {**TINY["train"], "valid_images": 0},
                         "select": [{"name": "best", "from": ["darts", "beta-darts"], "by": "valid_acc"}]},
     ["select rule 'best' selects by valid_acc", "method 'darts'", "hold out no images"]),
    ("select-no-train", {"train": False, "select": [{"name": "best", "from": ["darts"]}]},
     ["a select rule by valid_acc needs trainings"]),
    ("empty-lr", {"search": {**TINY["search"], "lr": ""}}, ["search sets 'lr' to nothing"]),
    ("null-lr", {"train": {**TINY["train"], "lr": None}}, ["train sets 'lr' to nothing"]),
    ("empty-sweep", {"methods": [{"method": "darts", "sweep": {"lr": [0.1, ""]}}]},
     ["sweep of method 'darts' sets 'lr' to nothing"]),
    ("newline-label", {"methods": [{"method": "darts", "label": "DARTS\n| x |"}]}, ["control character '\\n'"]),
    ("tab-condition", {"conditions": [{"policy": "darts", "label": "a\tb"}]}, ["condition label", "'\\t'"]),
    ("newline-name", {"name": "a\nb"}, ["grid name", "control character"]),
    ("long-label", {"methods": [{"method": "darts", "label": "x" * 300}]}, ["has 300 characters", "1 to 100"]),
    ("long-condition", {"conditions": [{"policy": "darts", "label": "c" * 300}]}, ["has 300 characters"]),
]


@pytest.mark.parametrize("name,change,fragments", BAD_GRIDS, ids=[c[0] for c in BAD_GRIDS])
def test_bad_grid_is_refused_by_plan_and_run_in_one_sentence_writing_nothing(tmp_path, name, change, fragments):
    grid = tmp_path / "grid.yaml"
    grid.write_text(change if isinstance(change, str) else yaml.safe_dump({**TINY, **change}, sort_keys=False))
    for args in (["bench", "plan", grid], ["bench", "run", grid, "--out", tmp_path / "out"]):
        code, output = invoke(args, tmp_path)
        lines = output.strip().splitlines()
        assert code == 2 and "Traceback" not in output and 1 <= len(lines) <= 3, output
        text = " ".join(output.split())
        assert all(f in text for f in fragments), text
        assert str(grid) in text or "tiny" in text or "bomb" in text, text
        assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"], output


def test_bad_grid_messages_are_one_sentence():
    for name, change, _ in BAD_GRIDS:
        if isinstance(change, str):
            continue
        with pytest.raises(Exception) as info:
            expand(grid_from_dict({**TINY, **change}, "grid.yaml"))
        message = str(info.value)
        assert message.count(". ") == 0 and message.endswith("."), (name, message)


def test_bounds_leave_ordinary_grids_alone(tmp_path):
    # Aliases within reason stay allowed, and so does a label of 100 printable characters (spaces, unicode).
    text = textwrap.dedent("""\
        name: aliased
        search: &sizes {epochs: 1, layers: 3, init_channels: 4, image_size: 8, limit_images: 32, batch_size: 8}
        train: *sizes
        methods: [{method: darts, label: "%s"}]
        spaces: [s3]
        datasets: [synthetic]
        seeds: 2
        """) % ("Λ-DARTS " + "x" * 92)
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    cells = expand(load_grid(grid))
    assert len(cells) == 2 and cells[0].method.startswith("Λ-DARTS") and len(cells[0].method) == 100
    assert len(Path(cells[0].run_dir).name) < 255
    # A dataset named by a long path is no label to bound (run directories name it by its folder), nor is it one
    # when a mapping gives it a label; the label itself still is.
    path = "folder:/" + "/".join(["d" * 40] * 4)
    for entry in (path, {"dataset": path}, {"dataset": path, "label": "mine"}):
        assert grid_from_dict({"name": "own", "methods": ["darts"], "spaces": ["s3"], "datasets": [entry],
                               "seeds": 1}).datasets[0].name == path
    with pytest.raises(Exception, match="has 300 characters"):
        grid_from_dict({"name": "own", "methods": ["darts"], "spaces": ["s3"], "seeds": 1,
                        "datasets": [{"dataset": path, "label": "x" * 300}]})
