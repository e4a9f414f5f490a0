"""The version, in a module of its own: the package root imports the API, which imports what records it."""

__version__ = "0.1.0"
