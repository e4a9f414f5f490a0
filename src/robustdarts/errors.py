"""User-facing errors: one sentence that names the bad value and the fix; the CLI prints it and exits 2."""


class RobustDartsError(Exception):
    """A problem with the user's input (names, files, configs); never a bug in robustdarts."""


def unknown(kind: str, name: object, choices) -> RobustDartsError:
    """The error for a name that is not in a registry, listing the accepted names."""
    return RobustDartsError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(map(str, choices)))}.")
