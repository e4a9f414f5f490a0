"""Search spaces (data) and candidate ops (modules)."""

from .ops import make_op, op_names, OPS, register_op
from .registry import SPACES, Space, get_space, register_space

__all__ = ["make_op", "op_names", "OPS", "register_op", "SPACES", "Space", "get_space", "register_space"]
