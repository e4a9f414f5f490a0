"""Stopping long work from outside (issue 25): Ctrl-C of a bench grid, a SIGKILL of the launcher of a 2-process
search, a SIGKILL of one of its ranks. Real processes, since signals, process groups and orphans are the point;
every run is tiny (8x8 synthetic images, C=4, 3 cells) and each test takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from robustdarts.bench import Store

SIZES = {"epochs": 3, "batch_size": 8, "init_channels": 4, "layers": 3, "image_size": 8, "limit_images": 64,
         "leakage_every": 0, "hessian_every": 0}


def _env(**extra) -> dict:
    return {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", **extra}


def _foreground() -> None:
    """A child's SIGINT as a terminal's foreground job has it, whatever this test process inherited: pytest started
    as a background job of a non-interactive shell (``pytest &``) has SIGINT ignored, and its children would inherit
    that and never see the Ctrl-C these tests send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


# ---- Ctrl-C of a grid -----------------------------------------------------------------------------------------------
def test_ctrl_c_of_a_grid_starts_no_new_cell_exits_130_with_the_command_and_the_rerun_completes(tmp_path):
    """SIGINT to the driver alone (as ``kill -INT``; a terminal's Ctrl-C also reaches the workers, which count one
    signal): the running cell stops within a step, none of the queued cells starts, the sentence names the exact
    command, and that command then finishes the grid."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "ctrl-c", "methods": ["darts"], "spaces": ["s3"],
                                    "datasets": ["synthetic"], "seeds": [0, 1], "train": False,
                                    "search": SIZES}))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "robustdarts", "bench", "run", str(grid), "--out", str(out), "--workers", "1",
               "--threads", "1", "--json"]
    driver = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=_foreground)
    try:
        _wait_for(lambda: list(out.glob("cells/*/metrics.jsonl")) or driver.poll() is not None, 300,
                  "the first cell's first epoch")
        assert driver.poll() is None, driver.communicate()
        signalled = time.time()
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    text = " ".join(err.split())
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"continue with robustdarts bench run {grid} --out {out} --workers 1 --threads 1." in text, text
    with Store(out) as store:
        cells = store.cells()
    started = [c for c in cells if c["started"] is not None]
    assert len(cells) == 2 and len(started) == 1, cells  # the running cell; the queued one did not start
    assert all(c["started"] < signalled for c in started)
    assert {c["status"] for c in cells} == {"interrupted", "pending"}, cells  # its worker is gone: resumable
    stopped = out / started[0]["run_dir"]

    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["done"] == 2 and summary["ran"] == 2, summary
    epochs = [json.loads(line)["epoch"] for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]  # the interrupted cell resumed from its checkpoint: each epoch once


# ---- a 2-process search: the launcher killed, one rank killed ------------------------------------------------------
def _ddp_search(out: Path, tmp: Path, background: bool = False, session: bool = False) -> subprocess.Popen:
    """A 2-process search of 50 tiny epochs (killed long before its end); ``background``: started as a shell's
    ``&`` job is, with SIGINT ignored, which its ranks inherit (torch's own death signal for ranks is SIGINT)."""
    args = [sys.executable, "-m", "robustdarts", "search", "--space", "s3", "--dataset", "synthetic", "--nproc", "2",
            "--out", str(out), "--no-progress"]
    args += [a for k, v in {**SIZES, "epochs": 50}.items() for a in ("--set", f"{k}={v}")]
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else _foreground
    return subprocess.Popen(args, env=_env(TMPDIR=str(tmp)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=ignore, start_new_session=session)


def _ranks(launcher: subprocess.Popen) -> list[int]:
    """The launcher's two rank processes (multiprocessing also starts a resource tracker, which is not one)."""
    return [pid for pid in _children(launcher.pid)
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]


def test_ranks_die_with_a_killed_launcher_and_leave_no_temp_folder(tmp_path):
    out, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    launcher, ranks = _ddp_search(out, tmp, background=True), []
    try:
        _wait_for(lambda: (out / "checkpoint.pt").exists() or launcher.poll() is not None, 300, "the first epoch")
        assert launcher.poll() is None, launcher.communicate()
        ranks = _ranks(launcher)
        assert len(ranks) == 2, ranks
        launcher.kill()  # SIGKILL: the launcher runs no cleanup of its own
        launcher.wait(timeout=30)
        _wait_for(lambda: not any(_alive(pid) for pid in ranks), 10, "the ranks to die with their launcher")
    finally:  # ranks that outlived their launcher (the failure looked for) must not go on searching
        for pid in set(ranks) | set(_children(launcher.pid) if launcher.poll() is None else []):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
    assert not list(tmp.glob("robustdarts-ranks-*")) and not list(tmp.glob("pytorch-errorfile-*"))


def test_a_rank_killed_by_a_signal_is_named_with_the_signal_and_how_to_resume(tmp_path):
    out, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    launcher = _ddp_search(out, tmp)
    try:
        _wait_for(lambda: (out / "checkpoint.pt").exists() or launcher.poll() is not None, 300, "the first epoch")
        assert launcher.poll() is None, launcher.communicate()
        rank0 = int((out / ".lock").read_text())  # rank 0 writes the run and holds its lock
        rank1 = next(pid for pid in _ranks(launcher) if pid != rank0)
        os.kill(rank1, signal.SIGKILL)
        _, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 2, err
    text = " ".join(err.split())
    assert "Traceback" not in err and "traceback" not in text, err  # none exists for a signal
    assert "search process 1" in text and "killed by signal 9 (SIGKILL" in text, text
    assert f"continue with robustdarts search --resume {out}" in text, text


def test_ctrl_c_of_a_two_process_search_exits_130_with_the_resume_command(tmp_path):
    """SIGINT to the launcher's process group, as a terminal's Ctrl-C sends it: the launcher holds no run lock (its
    rank 0 does), yet it says how to continue the run."""
    out, tmp = tmp_path / "run", tmp_path / "tmp"
    tmp.mkdir()
    launcher = _ddp_search(out, tmp, session=True)  # its own process group, as a terminal's foreground job
    try:
        _wait_for(lambda: (out / "checkpoint.pt").exists() or launcher.poll() is not None, 300, "the first epoch")
        assert launcher.poll() is None, launcher.communicate()
        os.killpg(launcher.pid, signal.SIGINT)
        _, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 130, err
    text = " ".join(err.split())
    assert "Traceback" not in err, err
    assert f"continue with robustdarts search --resume {out}" in text, text
