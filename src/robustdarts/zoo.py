"""Published genotypes by name (spec D §1.9: quark0/darts cnn/genotypes.py; spec L §4.2: SP-DARTS/genotypes.py).

Entries are copied gene for gene, including the 5-node NASNet and AmoebaNet cells with their odd concat lists and
the ops outside the DARTS search space (``sep_conv_7x7``, ``conv_7x1_1x7``); those two therefore name no space.
"""

from __future__ import annotations

from .errors import unknown
from .genotype import Genotype


def _darts(normal, normal_concat, reduce, reduce_concat, space=None) -> Genotype:
    return Genotype(kind="darts", normal=normal, reduce=reduce, normal_concat=normal_concat,
                    reduce_concat=reduce_concat, space=space)


NASNET = _darts(
    normal=[("sep_conv_5x5", 1), ("sep_conv_3x3", 0),
            ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
            ("avg_pool_3x3", 1), ("skip_connect", 0),
            ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
            ("sep_conv_3x3", 1), ("skip_connect", 1)],
    normal_concat=[2, 3, 4, 5, 6],
    reduce=[("sep_conv_5x5", 1), ("sep_conv_7x7", 0),
            ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
            ("avg_pool_3x3", 1), ("sep_conv_5x5", 0),
            ("skip_connect", 3), ("avg_pool_3x3", 2),
            ("sep_conv_3x3", 2), ("max_pool_3x3", 1)],
    reduce_concat=[4, 5, 6],
)

AMOEBANET = _darts(
    normal=[("avg_pool_3x3", 0), ("max_pool_3x3", 1),
            ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0), ("avg_pool_3x3", 3),
            ("sep_conv_3x3", 1), ("skip_connect", 1),
            ("skip_connect", 0), ("avg_pool_3x3", 1)],
    normal_concat=[4, 5, 6],
    reduce=[("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
            ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
            ("sep_conv_7x7", 0), ("avg_pool_3x3", 1),
            ("max_pool_3x3", 0), ("max_pool_3x3", 1),
            ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5)],
    reduce_concat=[3, 4, 6],
)

# DARTS first order.
DARTS_V1 = _darts(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=[2, 3, 4, 5],
    space="darts",
)

# DARTS second order: the published 2.76% / 3.3M-parameter cell.
DARTS_V2 = _darts(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
    space="darts",
)

# SP-DARTS in the 7-op DARTS space (no `none`); the reference file spells it `SP-DARTS=`, which is not Python.
SP_DARTS = _darts(
    normal=[("skip_connect", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 2), ("skip_connect", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_5x5", 4), ("sep_conv_5x5", 3)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 2), ("dil_conv_5x5", 1),
            ("skip_connect", 3), ("dil_conv_5x5", 2), ("dil_conv_5x5", 4), ("sep_conv_5x5", 3)],
    reduce_concat=[2, 3, 4, 5],
    space="darts-7",
)

GENOTYPES: dict[str, Genotype] = {
    "nasnet": NASNET,
    "amoebanet": AMOEBANET,
    "darts_v1": DARTS_V1,
    "darts_v2": DARTS_V2,
    "darts": DARTS_V2,  # the reference's alias
    "sp_darts": SP_DARTS,
}


def get_genotype(name: str) -> Genotype:
    """A published genotype; names are case-insensitive and '-' reads as '_' (``DARTS_V2``, ``SP-DARTS``)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in GENOTYPES:
        raise unknown("published genotype", name, GENOTYPES)
    return GENOTYPES[key]
