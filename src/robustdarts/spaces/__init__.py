"""Search spaces (data) and candidate ops (modules)."""

from .ops import make_op, op_names, OPS
from .registry import SPACES, Space, get_space

__all__ = ["make_op", "op_names", "OPS", "SPACES", "Space", "get_space"]
