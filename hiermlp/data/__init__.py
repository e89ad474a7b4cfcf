"""Datasets, samplers and transforms for training and evaluation (see :mod:`hiermlp.data.datasets`)."""

from hiermlp.data.datasets import (
    DATASET_STATS,
    EMBEDDED_PATH,
    ArrayImageDataset,
    CorruptImageError,
    ImageFolderDataset,
    PreparedDataset,
    build_dataset,
    check_labels,
    collate_prepared,
    dataset_stats,
    folder_split,
    known_labels,
)
from hiermlp.data.idx import load_idx_split, read_idx
from hiermlp.data.sampling import GlobalBatchSampler, SeededDataset, ShardSampler, mix_seed, subset_indices
from hiermlp.data.transforms import build_transform

__all__ = [
    "DATASET_STATS",
    "EMBEDDED_PATH",
    "ArrayImageDataset",
    "CorruptImageError",
    "GlobalBatchSampler",
    "ImageFolderDataset",
    "PreparedDataset",
    "SeededDataset",
    "ShardSampler",
    "build_dataset",
    "build_transform",
    "check_labels",
    "collate_prepared",
    "dataset_stats",
    "folder_split",
    "known_labels",
    "load_idx_split",
    "mix_seed",
    "read_idx",
    "subset_indices",
]
