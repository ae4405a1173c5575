"""`prepare` section of params.yaml: which data set, how to split and resize it, the phantom."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from diffaug.config import Section

DatasetName = Literal["phantom", "kvasir_seg", "cvc_clinicdb", "refuge2", "folder"]


class PhantomConfig(Section):
    """The embedded, seed-generated data set used by the tiny default profile."""

    family: Literal["polyp", "fundus"] = "polyp"  # colonoscopy frames with polyps | fundus disc/cup
    train: int = Field(120, ge=4)  # labelled training frames
    test: int = Field(60, ge=2)  # labelled test frames
    normals: int = Field(40, ge=1)  # lesion-free backgrounds for synthesis (fundus: CDR < cdr_normal_max)
    # polyp: the hard cases' shares. 0 and 0 give only large, raised, recoloured lesions (clearly
    # painted: tests/test_gate_discrimination.py); the defaults mimic the paper's hard-case mix.
    small_share: float = Field(0.35, ge=0.0, le=1.0)  # lesions drawn from the small range (0.6-4.5 % of the frame)
    flat_share: float = Field(0.25, ge=0.0, le=1.0)  # lesions barely raised and barely recoloured ("flat")
    # frames rendered like the training ones (lesions included) whose masks are dropped: the
    # unlabelled frames of data/prepared/unlabelled.npz (diffaug.data.unlabelled); 0 = none
    unlabelled: int = Field(240, ge=0)


class SplitFiles(Section):
    """Official split lists (one file stem per line), e.g. Kvasir-SEG's train.txt / val.txt."""

    train: str | None = None  # path (absolute or relative to prepare.root); null = seeded split
    test: str | None = None


class PrepareConfig(Section):
    """`prepare`: read a data set, resize, split, derive normals, mask bank and fingerprint."""

    dataset: DatasetName = "phantom"  # phantom | kvasir_seg | cvc_clinicdb | refuge2 | folder
    root: str | None = None  # folder of a real data set (required unless dataset = phantom)
    image_size: int = Field(64, ge=16, le=2048)  # square side after resizing; multiple of 8 (VAE f=8). Paper: 256
    test_ratio: float = Field(0.2, gt=0.0, lt=1.0)  # seeded split when no official split: paper 0.2 (Kvasir 800/200)
    train_limit: int | None = Field(None, ge=1)  # keep only N training images (low-data regime; phantom too); null = all
    small_area_frac: float = Field(0.05, gt=0.0, lt=1.0)  # lesion area < this fraction of the image = "small" (paper: < 5 mm)
    flat_contrast: float = Field(0.06, ge=0.0, le=1.0)  # real data: lesion-vs-ring luminance contrast below this = "flat"
    cdr_normal_max: float = Field(0.5, gt=0.0, lt=1.0)  # fundus: CDR below this counts as normal (paper: early glaucoma 0.5-0.6)
    max_normals: int = Field(200, ge=1)  # real data: at most this many normal backgrounds
    # unlabelled frames (diffaug.data.unlabelled): a folder of images without masks (relative to
    # root) and/or the training frames beyond train_limit, images only; the generator's phases
    # (a)/(b) and the pseudolabel run use them
    unlabelled: str | None = None
    unlabelled_from_train: bool = False  # needs train_limit; never a test frame
    max_unlabelled: int = Field(0, ge=0)  # at most this many frames from the folder (seeded subset); 0 = all
    empty_masks: Literal["error", "normal"] = "error"  # an all-zero mask: fail, or use the frame as a normal background
    preview_count: int = Field(24, ge=1, le=256)  # frames shown in preview.png
    # Adapter options (real data sets only)
    images_dir: str | None = None  # override the image folder (relative to root); null = the layout as distributed
    masks_dir: str | None = None  # override the mask folder (relative to root)
    split_files: SplitFiles = SplitFiles()  # kvasir_seg / folder: official split lists
    sequence_table: str | None = None  # cvc_clinicdb: CSV `frame,sequence` (frame = file stem); null = split per frame
    mask_encoding: Literal["binary", "refuge"] = "binary"  # folder: binary lesion masks | REFUGE grey levels (fundus)
    fundus_crop: float = Field(0.0, ge=0.0)  # refuge2: crop a square of this many disc diameters around the disc; 0 = whole image
    phantom: PhantomConfig = PhantomConfig()

    @field_validator("image_size")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError("must be a multiple of 8 (the VAE downsamples by 8)")
        return v

    @model_validator(mode="after")
    def _root_needed(self) -> PrepareConfig:
        if self.dataset != "phantom" and not self.root:
            raise ValueError(f"dataset '{self.dataset}' needs prepare.root: the folder holding the data set")
        return self

    @model_validator(mode="after")
    def _unlabelled_source(self) -> PrepareConfig:
        if self.unlabelled_from_train and self.dataset == "phantom":
            raise ValueError("unlabelled_from_train is for real data sets; the phantom renders prepare.phantom.unlabelled frames")
        if self.unlabelled_from_train and self.train_limit is None:
            raise ValueError("unlabelled_from_train takes the training frames beyond prepare.train_limit; set train_limit")
        return self

    @property
    def family(self) -> Literal["polyp", "fundus"]:
        """Which kind of images/masks this data set has."""
        if self.dataset == "phantom":
            return self.phantom.family
        if self.dataset == "refuge2" or (self.dataset == "folder" and self.mask_encoding == "refuge"):
            return "fundus"
        return "polyp"
