"""Plain text in every picture: labels are names (methods, runs, grids, run directories), never markup.

Matplotlib reads text between two ``$`` as mathtext (or, with ``text.usetex``, as LaTeX), so a label such as
``a$b$c`` or ``$x`` once made every plot of its run or grid fail with a parser traceback. Each function that draws
runs under ``plain_text``, in which no text of the figure is parsed, from its creation to its saving (tick labels
are made at draw time).
"""

from __future__ import annotations

import functools

PLAIN = {"text.parse_math": False, "text.usetex": False}


def plain_text(draw):
    """Run ``draw`` with mathtext and TeX off for every text it creates or renders."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(PLAIN):
            return draw(*args, **kwargs)
    return wrapper
