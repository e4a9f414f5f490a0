"""Genotypes from a search run's per-epoch α/β archive, with any discretization policy."""

from __future__ import annotations

from pathlib import Path

from .config import SearchConfig
from .errors import RobustDartsError, unknown
from .methods import genotype_of, make_recipe
from .runs import RunDir
from .spaces import get_space

# Policies that choose the epoch from the whole archive, then derive it with the space's own rule.
EPOCH_POLICIES = ("selective-stop",)
# Policies that select on the trained supernet itself (search/darts_pt.py).
SUPERNET_POLICIES = ("darts-pt",)


def policy_names() -> list[str]:
    """Every ``--policy`` that ``derive`` accepts, so that its help and its error list the same set: the registered
    discretization policies and the epoch-choosing ones."""
    from .discretize import POLICIES
    return sorted(POLICIES) + list(EPOCH_POLICIES) + list(SUPERNET_POLICIES)


def derive_from_run(run_dir: str | Path, epoch: int | None = None, policy: str | None = None,
                    condition: str | None = None, progress: bool = False, console=None, **options):
    """(genotype, epoch). ``policy='selective-stop'`` picks the epoch by the operation-magnitude rule (spec L §6.2)
    and derives it with the space's own rule; ``policy='darts-pt'`` selects by perturbation on the trained supernet
    (``search/darts_pt.py``; ``options``: tune_epochs, val_images, seed, listener) and writes ``darts_pt.json``,
    with a progress bar on ``console`` when ``progress`` (every other policy takes a moment and shows none)."""
    if policy is not None and policy not in policy_names():
        raise unknown("discretization policy", policy, policy_names())
    run = RunDir(run_dir)
    cfg = run.load_config(SearchConfig)
    _check_fits(get_space(cfg.space), policy, condition, run_dir)
    if policy == "darts-pt":
        from .search.darts_pt import darts_pt
        if epoch is not None or condition is not None:
            raise RobustDartsError("--policy darts-pt selects from the run's final supernet; drop --epoch and "
                                   "--condition.")
        genotype, report = darts_pt(run_dir, progress=progress, console=console, **options)
        return genotype, report["epoch"]
    if options:
        raise RobustDartsError(f"{', '.join(sorted(options))} apply to --policy darts-pt only.")
    archive, _ = run.load_archive(cfg.space)  # checked to hold this space's α: never a genotype of another space
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
        available = f"{min(archive)}..{max(archive)}" if archive else "none (the archive is empty)"
        raise RobustDartsError(f"the archive of {run_dir} has no epoch {epoch}; available: {available}.")
    options = {"condition": condition} if condition else {}
    return genotype_of(archive[epoch], recipe, space, epoch, policy, **options), epoch


# The kinds of space each epoch-choosing or supernet policy derives on (selective-stop picks an epoch, then the
# space's own rule derives it: every kind; DARTS-PT: search/darts_pt.py).
_OTHER_POLICY_KINDS = {"selective-stop": ("darts", "lhd", "nb201"), "darts-pt": ("darts", "nb201")}


def _check_fits(space, policy: str | None, condition: str | None, run_dir) -> None:
    """Refuse a policy or an LHD condition that the run's space cannot take, naming every policy that can: the
    discretization table alone (discretize.derive) knows neither selective-stop nor darts-pt, and read an LHD
    condition as an option of the darts rule."""
    from .discretize import POLICIES

    if condition is not None and space.kind != "lhd":
        raise RobustDartsError(f"--condition applies to LHD runs only, and {run_dir} searched {space.name!r} "
                               f"({space.kind}); drop --condition.")
    kinds = POLICIES[policy].kinds if policy in POLICIES else _OTHER_POLICY_KINDS.get(policy)
    if policy is not None and space.kind not in kinds:
        fitting = sorted(n for n, p in POLICIES.items() if space.kind in p.kinds) + \
            [n for n, k in _OTHER_POLICY_KINDS.items() if space.kind in k]
        raise RobustDartsError(f"policy {policy!r} applies to {'/'.join(kinds)} spaces, not to {space.name!r} "
                               f"({space.kind}); use one of: {', '.join(fitting)}.")
