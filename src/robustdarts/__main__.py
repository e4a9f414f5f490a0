"""``python -m robustdarts ...`` (and ``torchrun --nproc-per-node N -m robustdarts search ...``): the CLI."""

from .cli import main

if __name__ == "__main__":
    main()
