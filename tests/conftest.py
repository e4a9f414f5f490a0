"""Shared test settings: where the project's shared/ folder is (beside the clone, as in CI)."""

from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (_REPO.parent / "shared", Path("/work/shared")) if p.exists()), _REPO.parent / "shared")
LHD_RESULTS = SHARED / "data" / "lhd-archs" / "results"
LHD_EXAMPLE = LHD_RESULTS / "cifar10" / "darts_bilevel" / "20211010-140512-concate-sum-darts-bilevel.pl"

import torch  # noqa: E402

# Test tensors are tiny: one thread is faster than two here, and immune to OpenMP spin-waits when the two
# cores are shared (a 16x4x8x8 conv took 60 ms with two contended threads against 0.2 ms with one).
torch.set_num_threads(1)


def tiny_config(method: str = "darts", space: str = "s3", **overrides):
    """The one tiny search config of the tests: the method preset's settings for the space (methods.search_config),
    shrunk to 4 channels, 3 cells (nb201: 1 per stage), 8x8 synthetic images, 32 of them, batch 8 (2 steps per
    epoch), one epoch, no leakage measurement; any field can be overridden."""
    from robustdarts.methods import search_config

    sizes = dict(method=method, space=space, dataset="synthetic", epochs=1, batch_size=8, init_channels=4,
                 layers=1 if space == "nb201" else 3, image_size=8, limit_images=32, leakage_every=0, seed=0)
    sizes.update(overrides)
    return search_config(sizes)
