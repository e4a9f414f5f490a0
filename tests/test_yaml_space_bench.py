"""A user's YAML space in bench grids: planned, run by spawned workers from the definition the cell carries (not
from the file, which may change), derived under every condition of the DARTS kind, trained and reported under the
space's name; cell ids follow the space's definition, not the file's path; a malformed file is one sentence at
plan and at run, with nothing written. Every size is tiny: 8x8 synthetic images, C=4, 3 cells, 32 images, 1 epoch.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from robustdarts.bench import Store, expand, grid_from_dict, load_grid, make_plan
from robustdarts.bench.backends import run_grid
from robustdarts.genotype import Genotype

from conftest import invoke, snapshot

OPS = ["none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"]
SIZES = {"batch_size": 8, "init_channels": 4, "layers": 3, "image_size": 8, "limit_images": 32}


def space_file(path: Path, **fields) -> Path:
    data = {"name": "bench-yaml", "ops": OPS, "nodes": 3, "inputs_per_node": 2, **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False))
    return path


def grid(spaces: list, conditions=("default",), train: bool = False) -> dict:
    data = {"name": "yaml-space", "methods": ["darts"], "spaces": spaces, "datasets": ["synthetic"], "seeds": [0],
            "conditions": list(conditions),
            "search": {"epochs": 1, "leakage_every": 0, "hessian_every": 0, **SIZES},
            "measure": {"eigenvalue_batches": 0}}
    if train:
        data["train"] = {"epochs": 1, "limit_test": 16, **SIZES}
    return data


def write_grid(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_grid_with_a_yaml_space_runs_end_to_end_from_the_planned_definition(tmp_path):
    """Planned, then the file is edited and finally deleted: the spawned worker searches, derives (the space's own
    rule, the darts policy, selective stop, DARTS-PT) and trains the space as planned, and the report, read after
    the file is gone, has rows for it under its name."""
    path = space_file(tmp_path / "spaces" / "mine.yaml")
    data = grid([{"space": str(path), "search": {"weight_decay": 1e-3}}],
                ["default", "darts", "selective-stop", "darts-pt"], train=True)
    plan = make_plan(load_grid(write_grid(tmp_path / "grid.yaml", data)))
    (cell,) = plan.cells
    assert cell.space == "bench-yaml" and cell.search["space"] == "bench-yaml"
    assert cell.search["weight_decay"] == 1e-3  # the mapping form's overrides apply
    assert cell.run_dir.startswith("cells/darts-bench-yaml-synthetic-s0-")
    planned = yaml.safe_load(path.read_text())
    space_file(path, ops=["none", "skip_connect", "sep_conv_3x3", "avg_pool_3x3"])  # edited after the plan

    summary = run_grid(plan, tmp_path / "out", workers=1, threads=1)
    assert summary.done == 1 and summary.failed == 0, summary.failures
    run = tmp_path / "out" / cell.run_dir
    recorded = yaml.safe_load((run / "space.yaml").read_text())
    assert recorded["name"] == "bench-yaml" and recorded["nodes"] == 3
    assert recorded["edges"]["normal"] == [planned["ops"]] * (2 + 3 + 4)  # the planned ops, not the edited file's
    path.unlink()

    with Store(tmp_path / "out") as store:
        rows = store.rows()
    assert sorted(r["condition"] for r in rows) == ["darts", "darts-pt", "default", "selective-stop"]
    for r in rows:
        assert r["status"] == "done" and r["space"] == "bench-yaml" and r["test_acc"] is not None, r
        genotype = Genotype.from_dict(r["genotype"])
        assert genotype.space == "bench-yaml" and genotype.num_nodes == 3
        for cell_type in genotype.cells:  # 2 inputs kept per node, each op from the planned list and never none
            genes = genotype.genes(cell_type)
            assert len(genes) == 3 * 2 and {g[0] for g in genes} <= set(planned["ops"]) - {"none"}
    code, text = invoke(["bench", "report", tmp_path / "out"], tmp_path)
    assert code == 0, text
    for condition in ("default", "darts", "selective-stop", "darts-pt"):
        assert f"## bench-yaml · synthetic · {condition}" in text
    assert "mine.yaml" not in text  # the space is named by its name, not by where its file was


def test_the_cell_id_follows_the_space_definition_not_the_file_path(tmp_path):
    a = space_file(tmp_path / "a" / "space.yaml")
    ids = {c.space: (c.cell_id, [k.unit_id for k in c.conditions], c.run_dir)
           for c in expand(grid_from_dict(grid([str(a), "s3"], train=True), "g.yaml"))}
    assert set(ids) == {"bench-yaml", "s3"}
    # A built-in space's cell is the one it is in a grid without the YAML space.
    (s3,) = expand(grid_from_dict(grid(["s3"], train=True), "g.yaml"))
    assert ids["s3"] == (s3.cell_id, [k.unit_id for k in s3.conditions], s3.run_dir)

    # The same space at another path (relative, from another directory), or written with every edge's list
    # and a comment: the same definition, the same cell, conditions and run directory.
    b = tmp_path / "elsewhere" / "copy.yaml"
    b.parent.mkdir()
    shutil.copy(a, b)
    spelled = tmp_path / "edges.yaml"
    spelled.write_text("# every edge written out\n" + yaml.safe_dump(
        {"name": "bench-yaml", "nodes": 3, "inputs_per_node": 2,
         "edges": {"normal": [OPS] * 9, "reduce": [OPS] * 9}}))
    for other in ("elsewhere/copy.yaml", str(spelled)):  # bench plan, run in tmp_path
        write_grid(tmp_path / "g.yaml", grid([other], train=True))
        code, text = invoke(["bench", "plan", "g.yaml", "--json"], tmp_path)
        assert code == 0, text
        (c,) = json.loads(text)["cell_list"]
        assert (c["space"], c["cell_id"], c["run_dir"]) == ("bench-yaml", ids["bench-yaml"][0], ids["bench-yaml"][2])
    for other in (b, spelled):
        (c,) = expand(grid_from_dict(grid([str(other)], train=True), "g.yaml"))
        assert (c.cell_id, [k.unit_id for k in c.conditions], c.run_dir) == ids["bench-yaml"]

    # Any edit of the definition is another search: new cell ids.
    for change in ({"ops": OPS[:3]}, {"nodes": 2}, {"inputs_per_node": 1}, {"description": "v2"}):
        space_file(a, **change)
        (c,) = expand(grid_from_dict(grid([str(a)], train=True), "g.yaml"))
        assert c.cell_id != ids["bench-yaml"][0], change


def test_a_stored_grid_reads_the_recorded_definition_not_the_file(tmp_path):
    """What the store keeps (Grid.to_dict) expands to the same cells after the file changed or went."""
    path = space_file(tmp_path / "space.yaml")
    g = grid_from_dict(grid([str(path)]), "g.yaml")
    stored = g.to_dict()
    assert stored["spaces"][0]["definition"]["edges"]["normal"] == [OPS] * 9
    (before,) = expand(g)
    path.unlink()
    (after,) = expand(grid_from_dict(stored, "the stored grid"))
    assert after.cell_id == before.cell_id and after.space_definition == before.space_definition


@pytest.mark.parametrize("change, fragment", [
    ({"nodes": 0}, "field 'nodes' is 0"),
    ({"ops": ["none", "conv_9x9"]}, "field 'ops' names unknown op 'conv_9x9'"),
    ({"inputs_per_node": 3}, "field 'inputs_per_node' is 3"),
    ({"ops": None, "edges": {"normal": [OPS] * 8, "reduce": [OPS] * 9}}, "field 'edges.normal' has 8 edge lists"),
    ({"name": "s3"}, "field 'name' is 's3', which is a built-in space"),
    ({"colour": "red"}, "unknown field 'colour'"),
    (None, "does not exist"),
])
def test_a_malformed_space_file_in_a_grid_is_one_sentence_and_nothing_is_written(tmp_path, change, fragment):
    space = tmp_path / "bad-space.yaml"
    if change is not None:
        space_file(space, **change)
    write_grid(tmp_path / "grid.yaml", grid(["s3", {"space": "bad-space.yaml"}], train=True))
    before = snapshot(tmp_path)
    for command in (["bench", "plan", "grid.yaml"], ["bench", "run", "grid.yaml", "--out", "out", "--json"]):
        code, text = invoke(command, tmp_path)
        lines = [line for line in text.splitlines() if line.strip()]
        assert code == 2 and 1 <= len(lines) <= 3 and "Traceback" not in text, text
        sentence = " ".join(text.split())
        assert "grid.yaml" in sentence and "bad-space.yaml" in sentence and fragment in sentence, sentence
    assert snapshot(tmp_path) == before


def test_two_space_files_of_one_name_and_different_definitions_are_refused(tmp_path):
    space_file(tmp_path / "one.yaml")
    space_file(tmp_path / "two.yaml", nodes=2)
    write_grid(tmp_path / "grid.yaml", grid(["one.yaml", "two.yaml"]))
    code, text = invoke(["bench", "plan", "grid.yaml"], tmp_path)
    assert code == 2 and "one.yaml and two.yaml define two different spaces named 'bench-yaml'" in " ".join(
        text.split()), text


def test_spaces_command_shows_a_space_file_by_its_name(tmp_path):
    space_file(tmp_path / "mine.yaml")
    code, text = invoke(["spaces", "mine.yaml"], tmp_path)
    assert code == 0 and "bench-yaml" in text and "3 intermediate nodes" in text and "9 edges" in text, text


def test_an_edited_space_file_is_costed_by_its_new_definition_in_the_same_process(tmp_path):
    """plan.py memoizes costs per space name: a file edited between two plans of one process must not be costed
    as it was (the same definition under a name never planned before gives the truth)."""
    path = space_file(tmp_path / "space.yaml", nodes=2)
    make_plan(grid_from_dict(grid([str(path)], ["default", "darts-pt"], train=True), "g.yaml"))
    space_file(path, nodes=4)
    edited = make_plan(grid_from_dict(grid([str(path)], ["default", "darts-pt"], train=True), "g.yaml"))
    fresh = make_plan(grid_from_dict(grid([str(space_file(tmp_path / "fresh.yaml", name="never-planned", nodes=4))],
                                          ["default", "darts-pt"], train=True), "g.yaml"))
    (a,), (b,) = edited.costs.values(), fresh.costs.values()
    assert (a.search_flops, a.derive_flops, a.train_flops) == (b.search_flops, b.derive_flops, b.train_flops)
