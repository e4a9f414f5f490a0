"""User-facing errors: one sentence that names the bad value and the fix; the CLI prints it and exits 2."""


class RobustDartsError(Exception):
    """A problem with the user's input (names, files, configs); never a bug in robustdarts. ``str(error)`` is one
    sentence naming the bad value and what is accepted; the CLI prints it and exits with code 2."""


def unknown(kind: str, name: object, choices, where: str = "") -> RobustDartsError:
    """The error for a name that is not in a registry, listing the accepted names; ``where`` (e.g. "for show")
    says where the name was given when the accepted names depend on it."""
    where = f" {where}" if where else ""
    return RobustDartsError(f"unknown {kind} {name!r}{where}; choose one of: {', '.join(sorted(map(str, choices)))}.")


def short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message names a bad value, it never dumps one (a 10,000-entry
    list, a 100,000-level nesting or a 5,000-digit integer would otherwise make the one sentence a page, or fail)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def first_line(error: BaseException, limit: int = 120) -> str:
    """The first informative line of an exception's text (torch's state-dict errors open with a bare heading
    ending in ':'), cut after a whole word within ``limit`` characters, for the parenthesis of a one-sentence
    message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.endswith(":")] or lines or [type(error).__name__]
    text = useful[0]
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."  # after a whole word: a cut mid-word reads as a typo


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """One line on stderr, once per process and message: for what must not stop the work that does not use it (a
    plugin that fails to load leaves the built-ins working)."""
    import sys

    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr)


def forget_warnings() -> None:
    """Let every warning print again (tests that load plugins anew)."""
    _WARNED.clear()
