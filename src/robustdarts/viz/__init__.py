"""Pictures: cell drawings, run curves and α trajectories."""

from .cells import draw_genotype
from .curves import plot_run, plot_runs

__all__ = ["draw_genotype", "plot_run", "plot_runs"]
