"""Selections a protocol makes among finished cells, from the store's numbers only.

R-DARTS(L2) (RobustDARTS): per seed, of the searches over its weight-decay grid — DARTS' own 3e-4 run included
where the grid lists it — the one whose architecture validates best; here by the held-out accuracy of the genotype
trained from scratch (``valid_acc``) or by the supernet's final validation accuracy (``supernet_val_acc``, the
one-shot error RobustDARTS logs). Best-of-k: per method, of its k seeds, the one that validates best. Never by the
test accuracy, which is reported, not selected on. A group with an unfinished or unscored candidate selects
nothing rather than choosing among a part of it.
"""

from __future__ import annotations

from typing import Any

from .grid import SelectRule

SCORES = {"valid_acc": "valid_acc", "supernet_val_acc": "supernet_val_acc"}


def method_key(entry: dict) -> str:
    return f"{entry['method']} [{entry['variant']}]" if entry.get("variant") else entry["method"]


def apply_rule(entries: list[dict], rule: SelectRule) -> list[dict]:
    """The selected entry of every complete group of ``rule``, as an entry of method ``rule.name`` with
    ``selected`` (the winner), ``selected_by`` and ``candidates`` ({candidate: score}); ties go to the earlier cell
    of the grid."""
    score = SCORES[rule.by]
    selected = []
    for group in _groups(entries, rule).values():
        if any(e["status"] != "done" or e.get(score) is None for e in group):
            continue
        best = max(group, key=lambda e: (e[score], -e["position"]))
        label = (lambda e: f"seed {e['seed']}") if rule.over == "seeds" else method_key
        selected.append({**best, "method": rule.name, "variant": "" if rule.over == "variants" else best["variant"],
                         "seed": best["seed"] if rule.over == "variants" else None,
                         "selected": label(best), "selected_by": rule.by, "k": len(group),
                         "candidates": {label(e): e[score] for e in group}})
    return selected


def _groups(entries: list[dict], rule: SelectRule) -> dict[tuple, list[dict]]:
    """The candidates of each selection ``rule`` makes: per seed among its variants, or per method among seeds."""
    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        if e["method"] in rule.from_:
            key = (e["space"], e["dataset"], e["condition"]) + \
                ((e["seed"],) if rule.over == "variants" else (e["method"], e["variant"]))
            groups.setdefault(key, []).append(e)
    return groups


def unselected(entries: list[dict], rule: SelectRule) -> list[dict]:
    """A stand-in for each selection ``rule`` cannot make yet (a candidate unfinished or unscored), with no numbers
    and the group's status (failed if a candidate failed, else running if one runs, else interrupted or pending),
    so that a comparison counts it as planned ("1 of 3") instead of forgetting it."""
    score, out = SCORES[rule.by], []
    numbers = ("test_acc", "valid_acc", "supernet_val_acc", "skip_normal", "genotype_skip_normal", "eigenvalue",
               "eigenvalue_settled", "conv_share_normal", "params", "params_with_aux")
    for group in _groups(entries, rule).values():
        if all(e["status"] == "done" and e.get(score) is not None for e in group):
            continue
        statuses = {e["status"] for e in group}
        status = next((s for s in ("failed", "running", "interrupted", "pending") if s in statuses), "pending")
        first = group[0]
        out.append({**first, **dict.fromkeys(numbers), "method": rule.name, "status": status, "curves": {},
                    "genotype": None, "variant": "" if rule.over == "variants" else first["variant"],
                    "seed": first["seed"] if rule.over == "variants" else None})
    return out


def consumed_by(rule: SelectRule, entries: list[dict]) -> set[tuple[str, str]]:
    """(method, variant) pairs a rule stands for in comparisons: a variants rule's sweep points (a method of
    ``from`` with a variant) and anything already named like the rule; a seeds rule's candidates stay."""
    if rule.over != "variants":
        return set()
    return {(e["method"], e["variant"]) for e in entries
            if (e["method"] in rule.from_ and e["variant"]) or e["method"] == rule.name}


def compared(entries: list[dict], rules: tuple[SelectRule, ...] | list[SelectRule]) -> tuple[list[dict], list[dict]]:
    """(the entries a comparison table shows: the grid's cells with every rule's candidates replaced by its
    selections, the selections alone)."""
    selections: list[dict] = []
    consumed: set[tuple[str, str]] = set()
    waiting: list[dict] = []
    for rule in rules:
        selections += apply_rule(entries, rule)
        waiting += unselected(entries, rule)
        consumed |= consumed_by(rule, entries)
    kept: list[Any] = [e for e in entries if (e["method"], e["variant"]) not in consumed]
    return kept + selections + waiting, selections
