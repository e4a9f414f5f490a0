"""Print docs/collapse.md's outcome rows (compared methods, then R-DARTS(L2)'s grid) from the collapse grid's store,
formatted as the report formats them; tests/test_collapse_example.py checks the page's rows against the report.

    python docs/tools/collapse_rows.py [runs/collapse]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from collapse import collapse_grid  # noqa: E402

from robustdarts.bench import Store, make_plan  # noqa: E402
from robustdarts.bench.report import _num, _trajectory, build, pct  # noqa: E402

WD = {"0.0009": "9e-4", "0.0027": "27e-4", "0.0081": "81e-4"}


def label(e: dict) -> str:
    if "selected" in e:
        point = e["selected"].split("=")[-1].rstrip("]") if "=" in e["selected"] else None
        return f"R-DARTS(L2), selects {WD[point]}" if point else "R-DARTS(L2), selects DARTS' run (3e-4)"
    if e["variant"]:
        return WD[e["variant"].split("=")[1]]
    return {"darts": "DARTS", "lambda-darts": "Λ-DARTS"}[e["method"]]


def row(e: dict) -> str:
    c = e["curves"]
    lam = " / ".join(f"{v:.2f}" for v in c.get("eigenvalue", []) if v is not None)
    skips = _trajectory(c["skip_normal"], 0).rsplit(" → ", 1)[0] + f" → **{c['skip_normal'][-1]}**"
    return (f"| {label(e)} | {e['seed']} | {skips} | {lam} | **{_num(e['eigenvalue_settled'])}** | "
            f"{_num(e['conv_share_normal'])} | {pct(e['supernet_val_acc'])} % | {pct(e['valid_acc'])} % | "
            f"{pct(e['test_acc'])} % | {round(e['params'] / 1e3)} k |")


def main(out: str = "runs/collapse") -> None:
    with Store(out) as store:
        whole = make_plan(collapse_grid())
        store.register(whole.grid.to_dict(), whole.cells)  # the whole study, as the example leaves it
        report = build(store)
    done = [e for e in report["_all"] if e["status"] == "done"]
    chosen = {e["seed"]: e for e in report["_shown"] if "selected" in e}
    for seed in sorted({e["seed"] for e in done}):
        print(*[row(e) for e in done if e["seed"] == seed and e["method"] == "darts"], sep="\n")
        if seed in chosen:
            print(row(chosen[seed]))
        print(*[row(e) for e in done if e["seed"] == seed and e["method"] == "lambda-darts"], sep="\n")
    print()
    grid = sorted((e for e in done if e["method"] == "rdarts-l2"), key=lambda e: (e["seed"], e["position"]))
    print(*[row(e) for e in grid], sep="\n")  # seed by seed, the weight decays in grid order


if __name__ == "__main__":
    main(*sys.argv[1:])
