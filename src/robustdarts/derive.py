"""Genotypes from a search run's per-epoch α/β archive, with any discretization policy."""

from __future__ import annotations

from pathlib import Path

from .config import SearchConfig
from .errors import RobustDartsError
from .methods import genotype_of, make_recipe
from .runs import RunDir
from .spaces import get_space


def derive_from_run(run_dir: str | Path, epoch: int | None = None, policy: str | None = None,
                    condition: str | None = None):
    """(genotype, epoch). ``policy='selective-stop'`` picks the epoch by the operation-magnitude rule (spec L §6.2)
    and derives it with the space's own rule."""
    run = RunDir(run_dir)
    cfg = run.load_config(SearchConfig)
    archive, _ = run.load_archive()
    space = get_space(cfg.space)
    recipe = make_recipe(cfg, space)
    trained = {e: a for e, a in archive.items() if e >= 0}
    if policy == "selective-stop":
        from .analysis.selective_stop import selective_stop_epoch
        if epoch is not None:
            raise RobustDartsError("--policy selective-stop chooses the epoch itself; drop --epoch.")
        epoch, policy = selective_stop_epoch(trained, space), None
    if epoch is None:
        epoch = max(trained) if trained else -1
    if epoch not in archive:
        raise RobustDartsError(f"the archive of {run_dir} has no epoch {epoch}; available: "
                               f"{min(archive)}..{max(archive)}.")
    options = {"condition": condition} if condition else {}
    return genotype_of(archive[epoch], recipe, space, epoch, policy, **options), epoch
