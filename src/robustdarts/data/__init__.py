"""In-memory datasets (uint8 tensors), batched augmentation on tensors, and persistent batch streams."""

from .augment import Augment, Draws, Normalize, draw, reference_augment, scaled_augment
from .datasets import (DATASETS, DatasetInfo, ImageSet, dataset_info, holdout, load_dataset, make_synthetic,
                       read_idx, resize_images, search_split)
from .stream import BatchStream, eval_batches

__all__ = [
    "Augment", "BatchStream", "DATASETS", "DatasetInfo", "Draws", "ImageSet", "Normalize", "dataset_info", "draw",
    "eval_batches", "holdout", "load_dataset", "make_synthetic", "read_idx", "reference_augment", "resize_images",
    "scaled_augment", "search_split",
]
