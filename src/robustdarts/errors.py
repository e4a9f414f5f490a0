"""User-facing errors: one sentence that names the bad value and the fix; the CLI prints it and exits 2."""


class RobustDartsError(Exception):
    """A problem with the user's input (names, files, configs); never a bug in robustdarts."""


def unknown(kind: str, name: object, choices, where: str = "") -> RobustDartsError:
    """The error for a name that is not in a registry, listing the accepted names; ``where`` (e.g. "for show")
    says where the name was given when the accepted names depend on it."""
    where = f" {where}" if where else ""
    return RobustDartsError(f"unknown {kind} {name!r}{where}; choose one of: {', '.join(sorted(map(str, choices)))}.")
