"""A restricted unpickler for the two pickle formats we must read: LHD `.pl` files and CIFAR python batches.

Pickle can call any importable object while loading; this one resolves only the numpy names needed to rebuild
arrays and refuses everything else, so a crafted file cannot run code. Plain containers (list, dict, bytes, str,
numbers) are built by pickle opcodes without any lookup and stay allowed.
"""

from __future__ import annotations

import io
import pickle

from .errors import RobustDartsError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        import numpy  # noqa: F401  (resolve through numpy so both numpy 1.x and 2.x module paths work)

        if module == "numpy":
            return getattr(numpy, name)
        try:  # numpy >= 2 moved numpy.core to numpy._core
            from numpy._core import multiarray
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core import multiarray
        return getattr(multiarray, name)


def safe_load(data: bytes, source: str = "file", encoding: str = "ASCII"):
    """Unpickle ``data`` admitting numpy arrays and plain containers only; a refused or broken file is a user error."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except pickle.UnpicklingError as e:
        raise RobustDartsError(f"{source} is not a plain numpy pickle ({e}); only files holding numpy arrays, "
                               f"lists and dicts can be loaded.") from None
    except Exception as e:  # truncated or garbage bytes
        raise RobustDartsError(f"{source} could not be read as a pickle ({type(e).__name__}: {e}); "
                               f"check that the file is complete.") from None
