"""The LHD ``.pl`` importer (spec L §1.5): a searched LHD architecture stored as probabilities, not a genotype.

A ``.pl`` file holds the node-joint edge probabilities ``P`` and the output weights ``O`` of both cells; turning it
into a ``Genotype`` takes the discretizer, so this lives above both ``genotype`` and ``discretize`` (genotype.py
would otherwise need discretize, which itself builds Genotypes). The pickle is read through the restricted
unpickler (numpy arrays only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .discretize import derive
from .errors import RobustDartsError
from .genotype import Genotype
from .safepickle import safe_load
from .spaces.registry import get_space

PL_FIELDS = ("P_normal", "P_reduce", "O_normal", "O_reduce")
_PL_LAYOUT = "a list of 4 float arrays: P_normal 20x7, P_reduce 20x7, O_normal 2x5, O_reduce 2x5"


def load_pl(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an LHD ``.pl`` file (spec L §1.5) into float32 tensors ``P_normal``, ``P_reduce`` (20x7 node-joint
    probabilities), ``O_normal``, ``O_reduce`` (2x5: softmax over nodes for the sum output, sigmoid gates).

    The pickle goes through the restricted unpickler: a file that names anything but numpy arrays is refused
    before anything in it runs."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RobustDartsError(f"cannot read LHD architecture file {name!r} ({e.strerror or e}); give an existing "
                               f".pl file.") from None
    arrays = safe_load(data, source=f"LHD architecture file {name!r}")
    if not isinstance(arrays, (list, tuple)) or len(arrays) != 4:
        raise RobustDartsError(f"{name!r} holds {type(arrays).__name__} of length "
                               f"{len(arrays) if hasattr(arrays, '__len__') else '?'}, but an LHD .pl file holds "
                               f"{_PL_LAYOUT}.")
    space = get_space("lhd")
    shapes = {"P_normal": space.alpha_shape("normal"), "P_reduce": space.alpha_shape("reduce"),
              "O_normal": (2, space.steps), "O_reduce": (2, space.steps)}
    out = {}
    for key, array in zip(PL_FIELDS, arrays):
        if not isinstance(array, np.ndarray) or array.dtype.kind != "f" or array.shape != shapes[key]:
            got = (f"{array.dtype} array of shape {array.shape}" if isinstance(array, np.ndarray)
                   else type(array).__name__)
            raise RobustDartsError(f"{name!r}: {key} is a {got}, but an LHD .pl file holds {_PL_LAYOUT}.")
        # Probabilities, not logits: a file of logits would be ranked the same per node but break the thresholds.
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise RobustDartsError(f"{name!r}: {key} has values outside [0, 1]; an LHD .pl file stores "
                                   f"probabilities and gates, not logits.")
        out[key] = torch.from_numpy(np.array(array, dtype=np.float32))
    for cell in ("normal", "reduce"):
        P, O = out[f"P_{cell}"], out[f"O_{cell}"]
        sums = [float(P[r.start:r.stop].sum()) for r in map(space.node_edges, range(space.steps))]
        if max(abs(s - 1) for s in sums + [float(O[0].sum())]) > 1e-3:
            raise RobustDartsError(f"{name!r}: a node block of P_{cell} or the row O_{cell}[0] does not sum to 1 "
                                   f"(node sums {[round(s, 4) for s in sums]}); the file must hold softmax "
                                   f"probabilities.")
    return out


def pl_weights(pl: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mixing-weights dict that ``discretize.derive`` takes, from ``load_pl``'s arrays."""
    weights = {}
    for cell in ("normal", "reduce"):
        weights[cell] = pl[f"P_{cell}"]
        weights[f"{cell}_sum"], weights[f"{cell}_cat"] = pl[f"O_{cell}"][0], pl[f"O_{cell}"][1]
    return weights


def genotype_from_pl(path: str | os.PathLike, condition: str = "base", **options) -> Genotype:
    """Load an LHD ``.pl`` file and discretize it under ``condition`` (base, 3ops, 4out, 1m; spec L §2.2)."""
    return derive("lhd", pl_weights(load_pl(path)), policy="lhd", condition=condition, **options)
