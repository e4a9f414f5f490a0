"""Pictures: cell drawings and run curves."""

from .cells import draw_genotype
from .curves import plot_run

__all__ = ["draw_genotype", "plot_run"]
