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
