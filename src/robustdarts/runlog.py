"""Live run logs for dashboards (``robustdarts search --log tensorboard``), beside the run directory's own records.

metrics.jsonl and archive.pt stay the record of a run; a logger only mirrors them, each epoch, into a format that
people already follow runs in. A logger is an epoch hook of the search loop (``hook(search, record)``) and can never
fail a search: any error while writing is a warning, and the search goes on. Only a missing package is an error,
raised before the search starts, since the user asked for a log that cannot be written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .errors import RobustDartsError, unknown


class TensorBoardLog:
    """Mirrors every numeric metrics.jsonl field as a scalar (``metrics/<field>``: losses, accuracies, λ_max, skip
    count, entropy, leakage, ...), each edge's α as a histogram (``alpha/<cell>/edge_<k>``), and each cell's
    derivation weights (the recipe's, as ``plot`` shows them) as an edges × ops heat map image (``weights/<cell>``).
    Events go to ``<run dir>/tensorboard``; step = epoch."""

    def __init__(self, run_dir: str | Path, config_text: str | None = None):
        check_logger("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(run_dir) / "tensorboard"
        self.writer = None
        self._guard("open", lambda: self._open(SummaryWriter, config_text))

    def _open(self, writer_cls, config_text):
        self.writer = writer_cls(log_dir=str(self.path))
        if config_text:
            self.writer.add_text("config", "```\n" + config_text + "\n```", 0)

    def _guard(self, what: str, fn) -> None:
        """Run ``fn``; a failure is a warning, never an exception that could stop the search."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a dashboard must not end a search, whatever goes wrong in it
            warnings.warn(f"TensorBoard logging failed to {what} ({type(e).__name__}: {e}); the search goes on.",
                          RuntimeWarning, stacklevel=3)

    def __call__(self, search, record: dict) -> None:
        epoch = int(record.get("epoch", 0))
        self._guard(f"write epoch {epoch}", lambda: self._write(search, record, epoch))

    def _write(self, search, record: dict, epoch: int) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(f"metrics/{key}", value, epoch)
        values = search.archive.get(epoch) if getattr(search, "archive", None) else None
        if values is not None:
            for name, tensor in values.items():
                if name.startswith("alpha/") and tensor.dim() == 2:
                    cell = name.split("/", 1)[1]
                    for k, row in enumerate(tensor.detach().float().cpu()):
                        self.writer.add_histogram(f"alpha/{cell}/edge_{k:02d}", row, epoch)
                elif name.startswith("beta/") and tensor.numel():  # LHD's output logits, DARTS-PT's ...
                    self.writer.add_histogram(name, tensor.detach().float().cpu().flatten(), epoch)
            from .methods.recipe import derive_weights
            weights = derive_weights(search.recipe, values, epoch)
            for cell in search.space.cell_types:
                self.writer.add_image(f"weights/{cell}", heat_map(weights[cell]), epoch, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self._guard("close", self.writer.close)


def heat_map(weights, scale: int = 12):
    """An edges × ops weight table as an RGB uint8 image (viridis, 0 → 1), each entry a ``scale``-pixel square."""
    import numpy as np
    from matplotlib import colormaps

    table = weights.detach().float().cpu().clamp(0, 1).numpy()
    rgb = (colormaps["viridis"](table)[..., :3] * 255).astype(np.uint8)
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


LOGGERS = {"tensorboard": TensorBoardLog}


def make_logger(name: str, run_dir: str | Path, config_text: str | None = None):
    """The logger called ``name`` for a run directory (``LOGGERS``)."""
    if name not in LOGGERS:
        raise unknown("log backend", name, LOGGERS)
    return LOGGERS[name](run_dir, config_text)


def check_logger(name: str) -> None:
    """Refuse an unknown log backend, or one whose package is missing, before a search writes anything."""
    if name not in LOGGERS:
        raise unknown("log backend", name, LOGGERS)
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise RobustDartsError("--log tensorboard needs the tensorboard package; install it with "
                                   "pip install 'robustdarts[tensorboard]'.") from None
