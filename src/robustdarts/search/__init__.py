"""The search: the bilevel loop, architecture-gradient modes, regularizers and per-epoch callbacks (early stop)."""
