"""Datasets, samplers and transforms for training and evaluation: classification (:mod:`hiermlp.data.datasets`)
and segmentation (:mod:`hiermlp.data.segmentation`, :mod:`hiermlp.data.scenes`)."""

from hiermlp.data.clips import (
    CLIP_CLASSES,
    CLIP_FRAMES,
    CLIP_SIZE,
    VIDEO_DATASETS,
    ClipDataset,
    ClipSceneDataset,
    load_clips,
    make_clips,
)
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
from hiermlp.data.scenes import SCENE_CLASSES, load_scenes, make_scenes
from hiermlp.data.segmentation import (
    SEG_DATASETS,
    JointTransform,
    build_seg_dataset,
    collate_pairs,
    num_seg_classes,
)
from hiermlp.data.transforms import build_transform

__all__ = [
    "CLIP_CLASSES",
    "CLIP_FRAMES",
    "CLIP_SIZE",
    "DATASET_STATS",
    "EMBEDDED_PATH",
    "SCENE_CLASSES",
    "SEG_DATASETS",
    "VIDEO_DATASETS",
    "ArrayImageDataset",
    "ClipDataset",
    "ClipSceneDataset",
    "CorruptImageError",
    "GlobalBatchSampler",
    "ImageFolderDataset",
    "JointTransform",
    "PreparedDataset",
    "SeededDataset",
    "ShardSampler",
    "build_dataset",
    "build_seg_dataset",
    "build_transform",
    "check_labels",
    "collate_pairs",
    "collate_prepared",
    "dataset_stats",
    "folder_split",
    "known_labels",
    "load_clips",
    "load_idx_split",
    "load_scenes",
    "make_clips",
    "make_scenes",
    "mix_seed",
    "num_seg_classes",
    "read_idx",
    "subset_indices",
]
