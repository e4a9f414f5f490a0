"""Fast by default: the settings that decide how (never what) a search computes, chosen in one place from the
device and the size of the work, by the figures in benchmarks/README.md.

- ``resolve_layout``: the config's "auto" ``channels_last`` / ``mix_in_bn`` / ``share_pools`` made true or false
  when the config is resolved (methods.search_config, and Search for a config built by hand), so config.yaml
  records what ran and a resumed run keeps its own settings whatever later defaults become. ``recompute`` is
  chosen where the search runs, by that machine's memory (memory.choose_recompute).
- ``choose_threads``: the intra-op thread count of a session from the work's size. Tiny tensors gain nothing
  from a second OpenMP thread (a 20-step tiny epoch took 5.5 s with one thread and with two) and stall at every
  op's barrier when another process holds a core (2x slower; a tiny step took 50-95 s instead of 2.5 s under load
  8), so small work runs on one thread whatever the machine has; large work keeps the threads the process has.
  Chosen from sizes only, never from the machine's load, so that a seed gives the same run every time.

The NCHW path (``channels_last``, ``mix_in_bn``, ``share_pools``, ``fast_depthwise`` false, ``recompute=none``)
is the original DARTS code's float order: its logits equal the reference port's bit for bit
(benchmarks/README.md); the cross-checks against reference code pin it (``REFERENCE_ORDER``).
"""

from __future__ import annotations

import dataclasses

from .config import AUTO

# One activation tensor of the first stage (images of a step in this process x C x side²) below which one thread
# is used: the tiny preset (32 x 8 x 16²: 65,536) measured no gain from two threads, the standard size (64 x 16 x
# 32²: 1,048,576) about 1.8x from two; between them nothing was measured, so the cut is placed at 4x tiny.
SMALL_WORK = 1 << 18

# The options with the float order of the reference code, for cross-checks against reference ports.
REFERENCE_ORDER = dict(channels_last=False, mix_in_bn=False, share_pools=False, fast_depthwise=False,
                       recompute="none")


def _on_cpu(device: str) -> bool:
    return str(device).split(":")[0] == "cpu"


def resolve_layout(cfg):
    """``cfg`` (a SearchConfig or a TrainConfig) with its "auto" layout fields chosen (a copy; explicit values are
    kept):

    - ``channels_last``: on the CPU, where the depthwise convolutions' NHWC kernels make a step 0.46-0.64x the
      reference's (against 0.75-1.0 in NCHW); off on GPUs, where it has not been measured (gpu_step.py measures
      it). Off with ``compile=ops``, which was measured in NCHW only.
    - ``share_pools``: with ``channels_last`` (5-8% fewer saved bytes, a few % faster, nothing lost).
    - ``fast_depthwise``: with ``channels_last`` (where its shape rule was measured): the depthwise
      convolutions' gradients as forward convolutions where that pays (dwconv.py), which took the tiny
      first-order step from 0.53 to 0.44-0.48x the reference and the standard one from 0.44 to 0.34x
      (benchmarks/README.md). A TrainConfig gets ``channels_last`` and ``fast_depthwise`` by the same rule
      (the evaluation network's step: 0.67x the stock build at tiny size, benchmarks/train_step.py).
    - ``mix_in_bn``: with ``channels_last``, except for the second-order (unrolled) step: first order it brings a
      tiny step from 0.50 to 0.48x the reference and its peak memory from 0.79 to 0.60x; second order its affine
      batch-norm backward, paid in the unrolled step's extra passes, made the step slower (0.69 against 0.64x).
      Both are off with ``compile=ops``, which compiles whole ops that these two split (supernet.configure).
      With ``mix_in_bn`` the zero-weight skip (sparse methods' weight steps) agrees with computing every op to
      float rounding (weight gradients within ~4e-7 on the tests' tiny net), not bit for bit as on the NCHW path:
      autograd sums the same gradients in another order. Each run is still deterministic and resumes bit-exactly.
    """
    nhwc = cfg.channels_last
    compiled = getattr(cfg, "compile", "off") != "off"
    if nhwc == AUTO:
        nhwc = _on_cpu(cfg.device) and not compiled
    fast = bool(nhwc) and not compiled
    chosen = {"channels_last": nhwc, "fast_depthwise": fast if cfg.fast_depthwise == AUTO else cfg.fast_depthwise}
    if hasattr(cfg, "share_pools"):  # the supernet's own options (a TrainConfig has only the two above)
        chosen["share_pools"] = fast if cfg.share_pools == AUTO else cfg.share_pools
        chosen["mix_in_bn"] = (fast and cfg.arch_order != "second") if cfg.mix_in_bn == AUTO else cfg.mix_in_bn
    if all(getattr(cfg, k) == v for k, v in chosen.items()):
        return cfg
    return dataclasses.replace(cfg, **chosen)


def choose_threads(batch: int, channels: int, side: int, available: int) -> int:
    """Intra-op threads for a step whose first-stage activation is ``batch`` x ``channels`` x ``side``² (the
    images of one process): one below ``SMALL_WORK`` elements, else the ``available`` ones (what the process was
    given: all cores, a bench cell's share, a spawned rank's share)."""
    available = max(int(available), 1)
    return 1 if batch * channels * side * side < SMALL_WORK else available


_GIVEN: list[int] = []  # the intra-op threads this process was given, read before a search first changes them


def given_threads() -> int:
    """The threads this process was given (all cores, a bench cell's share, a spawned rank's share), read on first
    use: a later search must not take the one thread an earlier small one chose as what the process has."""
    if not _GIVEN:
        import torch
        _GIVEN.append(torch.get_num_threads())
    return _GIVEN[0]


def threads_for(cfg, image_size: int, available: int) -> int:
    """The thread count of a session of ``cfg``: its ``threads`` field when set (a positive number), else chosen
    from the work's size (``choose_threads``); on a GPU the host threads are left as they are."""
    if cfg.threads not in (AUTO, 0):
        return int(cfg.threads)
    if not _on_cpu(cfg.device):
        return max(int(available), 1)
    return choose_threads(max(cfg.batch_size // max(getattr(cfg, "nproc", 1), 1), 1), cfg.init_channels, image_size,
                          available)
