"""A default tiny search, idle and with another process keeping one core busy (issue 28: at most 1.5x slower).

    python benchmarks/shared_machine.py                     # the README's main command: ~2-3 min on 2 idle cores
    python benchmarks/shared_machine.py --epochs 2 --space darts
    python benchmarks/shared_machine.py --set threads=2     # what a fixed thread count does under load

Each search is the CLI, started as a user would start it (``robustdarts search --space s3 --dataset fashion-mnist
--preset tiny``, the README's main command without its ``--draw``, into a temporary run directory, no progress
bars), in a new process with ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` removed from its environment, so that torch starts with its own default thread count and the
search chooses its threads as it would for a user. The busy process is a Python loop (``while True: pass``), started
before the search and stopped by its process id after it. Runs alternate idle / busy (``--repeats`` pairs); printed:
each wall time, the medians and their ratio, and the load average. The whole command is timed, import and data
loading included, as the README's figure is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_search(args, out: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    command = [sys.executable, "-m", "robustdarts", "search", "--space", args.space, "--dataset", args.dataset,
               "--preset", "tiny", "--out", str(out), "--no-progress"]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    for item in args.set:
        command += ["--set", item]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"the search failed (exit {done.returncode}):\n{done.stdout[-2000:]}")
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    for line in notes:
        print(f"    {line}")
    return seconds


def busy_core() -> subprocess.Popen:
    """Another process holding one core: a pure-Python loop, one thread."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="s3", help="search space (the README's main command: s3)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, help="epochs of each search (default: the tiny preset's 6)")
    parser.add_argument("--repeats", type=int, default=1, help="idle/busy pairs, alternating")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="passed to the search")
    args = parser.parse_args()
    print(f"robustdarts search --space {args.space} --dataset {args.dataset} --preset tiny"
          f"{f' --epochs {args.epochs}' if args.epochs else ''}{''.join(f' --set {s}' for s in args.set)}; "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
    times = {"idle": [], "busy": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for case in (("idle", "busy") if r % 2 == 0 else ("busy", "idle")):
                busy = busy_core() if case == "busy" else None
                try:
                    time.sleep(0.5 if busy else 0)  # the loop is running before the search starts
                    seconds = timed_search(args, Path(tmp) / f"{case}-{r}")
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                times[case].append(seconds)
                print(f"  {case:4s} {seconds:7.1f} s  (load average {os.getloadavg()[0]:.1f})", flush=True)
    idle, loaded = statistics.median(times["idle"]), statistics.median(times["busy"])
    print(f"idle {idle:.1f} s, one core busy {loaded:.1f} s: ratio {loaded / idle:.2f} (target <= 1.5; the README's "
          f"main command idle: target <= 60 s)")


if __name__ == "__main__":
    main()
