"""Every name a user picks on the command line: each command's --help lists the registry's complete set, the error
for an unknown name lists the same set, every listed name is accepted, and the listings fit an 80-column terminal."""

import os
import re
import subprocess
import sys

import pytest
import typer.main
from rich.cells import cell_len
from typer.testing import CliRunner

from robustdarts import choices
from robustdarts.cli import app
from robustdarts.errors import RobustDartsError

# Options whose value is a name from a registry: each must carry a generated list (never one typed by hand).
CHOICE_PARAMS = {"space", "method", "dataset", "preset", "condition", "policy", "backend", "log", "fmt", "grid"}


def walk(group, path=()):
    """(command path, click command) of every command, subcommand groups included."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer may carry its own copy of click's classes)
            yield from walk(command, path + (name,))
        else:
            yield path + (name,), command


COMMANDS = list(walk(typer.main.get_command(app)))  # a fresh build: help texts still hold their tokens
runner = CliRunner()


def invoke(*args):
    """(exit code, output, the RobustDartsError raised or None) of the CLI run in this process."""
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})
    error = result.exception if isinstance(result.exception, RobustDartsError) else None
    if result.exception is not None and error is None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output, error


def flat(text: str) -> str:
    """Help output as one line: box drawing and line breaks removed, whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def listed_in_error(error: Exception) -> list[str]:
    message = str(error)
    assert "choose one of: " in message, message
    return message.split("choose one of: ", 1)[1].rstrip(".").split(", ")


def test_every_choice_option_of_every_command_lists_its_registry_in_help():
    seen = set()
    for path, command in COMMANDS:
        code, out, error = invoke(*path, "--help")
        assert code == 0 and error is None, (path, out)
        text = flat(out)
        assert "{one of:" not in text, (path, "an unexpanded choice token")
        for param in command.params:
            kinds = choices.kinds_in(getattr(param, "help", None))
            if param.name in CHOICE_PARAMS or (param.name == "name" and path in (("spaces",), ("methods",))):
                assert kinds, f"{' '.join(path)} {param.name}: its help names no registry (choices.one_of)"
            for kind in kinds:
                listing = "one of: " + ", ".join(choices.names(kind))
                assert listing in text, (path, param.name, listing)
                seen.add(kind)
    assert seen == set(choices.CHOICES), f"registries no command offers: {set(choices.CHOICES) - seen}"


# ---- each listed name is accepted; an unknown one is refused with the same list ---------------------------------
def dry_run(*args):
    return invoke("search", "--dry-run", "--json", "--dataset", "synthetic", "--layers", 2, "--channels", 4, *args)


def assert_accepts_all_and_refuses_unknown(kind, run, canonical=None):
    """``run(name)`` -> (code, output, error). Every listed name passes; a bogus one fails listing ``canonical``
    (default: every listed name), and everything that error lists is listed in the help too."""
    listed = choices.names(kind)
    for name in listed:
        code, out, error = run(name)
        assert code == 0 and error is None, (kind, name, error or out)
    code, _, error = run("no-such-name")
    assert code != 0 and error is not None, kind
    in_error = listed_in_error(error)
    assert sorted(in_error) == sorted(canonical or listed), (kind, in_error)
    assert set(in_error) <= set(listed)


def test_search_spaces_methods_datasets_presets():
    from robustdarts.data.datasets import DATASETS

    assert_accepts_all_and_refuses_unknown("space", lambda n: dry_run("--space", n))
    assert_accepts_all_and_refuses_unknown("method", lambda n: dry_run("--method", n, "--space", "s2"))
    # aliases (fmnist, cifar-10, ...) are listed in the help; the error names the canonical datasets
    assert_accepts_all_and_refuses_unknown("dataset", lambda n: invoke("search", "--dry-run", "--json", "--dataset", n,
                                                                       "--layers", 2, "--channels", 4),
                                           canonical=list(DATASETS))
    assert_accepts_all_and_refuses_unknown("preset", lambda n: dry_run("--preset", n))
    assert_accepts_all_and_refuses_unknown("space", lambda n: invoke("spaces", n, "--json"))
    assert_accepts_all_and_refuses_unknown("method", lambda n: invoke("methods", n, "--json"))
    assert_accepts_all_and_refuses_unknown("space", lambda n: invoke("methods", "darts", "--space", n, "--json"))


def test_log_backends():
    pytest.importorskip("tensorboard")
    assert_accepts_all_and_refuses_unknown("log", lambda n: dry_run("--log", n))


def test_show_datasets_and_lhd_conditions(search_runs):
    assert_accepts_all_and_refuses_unknown("show-dataset", lambda n: invoke("show", "darts_v2", "--dataset", n,
                                                                            "--json"))
    assert_accepts_all_and_refuses_unknown("condition", lambda n: invoke("derive", search_runs["lhd"], "--condition",
                                                                         n, "--json"))


def test_derive_policies_on_a_run_of_their_kind(search_runs, monkeypatch):
    from robustdarts.discretize import POLICIES
    from robustdarts.search import darts_pt
    from robustdarts.zoo import get_genotype

    # DARTS-PT fine-tunes and probes the supernet (minutes even on a tiny run): here it only has to be reached
    monkeypatch.setattr(darts_pt, "darts_pt", lambda run_dir, **kw: (get_genotype("darts_v2"), {"epoch": 1}))
    kind_run = {"darts": search_runs["s3"], "nb201": search_runs["nb201"], "lhd": search_runs["lhd"]}

    def run(name):
        kinds = POLICIES[name].kinds if name in POLICIES else ("darts",)
        return invoke("derive", kind_run[kinds[0]], "--policy", name, "--json")
    assert_accepts_all_and_refuses_unknown("policy", run)


def test_bench_backends_formats_and_grid_presets(tmp_path):
    from robustdarts.bench.backends import check_backend

    for backend in choices.names("backend"):
        try:
            check_backend(backend, None)
        except RobustDartsError as e:  # a backend whose package is missing says how to install it
            assert "install" in str(e), e
    code, _, error = invoke("bench", "run", "collapse-cpu", "--out", tmp_path / "b", "--backend", "nope")
    assert sorted(listed_in_error(error)) == sorted(choices.names("backend"))
    code, _, error = invoke("bench", "report", tmp_path, "--format", "nope")
    assert sorted(listed_in_error(error)) == sorted(choices.names("report-format"))
    assert_accepts_all_and_refuses_unknown("grid-preset", lambda n: invoke("bench", "plan", n, "--json"))


# ---- listings that fit an 80-column terminal ---------------------------------------------------------------------
def cli80(*args) -> list[str]:
    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "robustdarts.cli", *args], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").split("\n")
    assert all(cell_len(line) <= 80 for line in lines), [line for line in lines if cell_len(line) > 80]
    return lines


def rows_of(lines: list[str], names) -> dict[str, list[str]]:
    """Lines per row: a row starts with its name at column 0 and goes on with indented lines."""
    rows, current = {}, None
    for line in lines:
        first = line.split(" ", 1)[0]
        if first in names and not line.startswith(" "):
            current = rows.setdefault(first, [])
        elif not line.startswith(" "):
            current = None  # header or footer
        if current is not None:
            current.append(line)
    return rows


@pytest.mark.parametrize("args", [("methods",), ("methods", "--space", "nb201"), ("spaces",)])
def test_listings_fit_80_columns_in_rows_of_one_or_two_lines(args):
    names = choices.names("method" if args[0] == "methods" else "space")
    rows = rows_of(cli80(*args), names)
    assert set(rows) == set(names)
    assert all(1 <= len(lines) <= 2 for lines in rows.values()), {n: ls for n, ls in rows.items() if len(ls) > 2}


def test_one_method_in_full_names_paper_recipe_per_kind_and_typed_options():
    text = "\n".join(cli80("methods", "lambda-darts"))
    assert "Movahedi et al." in text
    for kind in ("darts", "s1s4", "lhd", "nb201"):
        assert re.search(rf"^{kind}\s", text, re.M), kind
    assert re.search(r"^lambda\s+float\s+0\.125\s+.*nb201: 0\.25", text, re.M), text
