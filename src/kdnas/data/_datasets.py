"""Image datasets as uint8 tensors: CIFAR-10/100, image folders (``train/<class>/`` +
``test/<class>/``, or a flat ``<class>/`` folder split here), and the embedded digits.

Every loader returns a ``Dataset``: the official training and test images as ``N x C x H x W``
uint8 tensors with int64 labels. No torchvision: CIFAR's python batches are read with a
restricted unpickler (``kdnas.safe_pickle.load_array_pickle``), image folders with PIL.
"""

from __future__ import annotations

import logging
import operator
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdnas.safe_pickle import UnsafePickleError, load_array_pickle

__all__ = [
    "DATASET_FORMS",
    "EMBEDDED_DATASETS",
    "FLAT_TEST_FRACTION",
    "Dataset",
    "DatasetError",
    "ImageSet",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_flat_image_folder",
    "load_image_folder",
]

logger = logging.getLogger(__name__)

#: Datasets that ship inside an installed package and so load offline on a fresh machine.
EMBEDDED_DATASETS: tuple[str, ...] = ("digits",)

#: Side the digits are upsampled to by default: measured in docs/training.md, 16x16 trains
#: MobileNetV2 to far higher accuracy than 8x8 (whose maps shrink to 1x1 by the 4th stage)
#: at about the same CPU time.
DIGITS_RESOLUTION = 16
#: Fixed seed and fraction of the digits' own test split (scikit-learn ships no split).
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
#: Default share of every class a flat ``<class>/`` folder gives its test part, and the fixed
#: seed of that draw (the same split on every machine; the fraction is the user's to change).
FLAT_TEST_FRACTION = 0.2
FLAT_SPLIT_SEED = 0

#: What ``--dataset`` accepts, for help texts and errors.
DATASET_FORMS = (
    "'digits' (embedded)",
    "a CIFAR-100 (cifar-100-python) or CIFAR-10 (cifar-10-batches-py) folder or .tar.gz",
    "an image folder with train/<class>/ and test/<class>/ (or val/)",
    "a flat image folder of <class>/ sub-folders (split into train and test here)",
)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class DatasetError(ValueError):
    """A dataset is missing, incomplete or corrupt; the message names what was expected where."""


@dataclass(frozen=True)
class ImageSet:
    """Images with labels.

    Args:
        images: ``N x C x H x W`` uint8 tensor (pixel values 0-255).
        labels: ``N`` int64 class indices in ``[0, num_classes)``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be an N x C x H x W uint8 tensor, got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be {self.images.shape[0]} int64 values, got {self.labels.dtype} "
                f"of shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A classification dataset with its official train/test split.

    Args:
        name: short identifier recorded with results ("cifar100", "digits", a folder name).
        train: the official training images (validation and subsets are drawn from these).
        test: the official test images.
        num_classes: number of classes K.
        flip_invariant: whether horizontal flips preserve the class (False for digits), so
            that the training protocol's flip augmentation can be switched off where it hurts.
        default_resolution: the side ``prepare`` resizes to when given none (None = native).
        split: how the test part was drawn when the dataset came without one (a flat class
            folder): ``{"test_fraction": f, "seed": s}``; None when the test part is the
            dataset's own. Recorded in a search's fingerprint.
        class_names: the name of each class index (the folder names of an image folder,
            "0".."9" for the digits); empty when the source names none.
    """

    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    flip_invariant: bool = True
    default_resolution: int | None = None
    split: dict[str, float] | None = None
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise ValueError(
                f"train and test images differ in shape: {tuple(self.train.images.shape[1:])} "
                f"vs {tuple(self.test.images.shape[1:])}"
            )
        for part, images in (("train", self.train), ("test", self.test)):
            if not len(images):
                continue
            lowest, highest = int(images.labels.min()), int(images.labels.max())
            if lowest < 0 or highest >= self.num_classes:
                raise ValueError(
                    f"{part} labels must lie in 0..{self.num_classes - 1} "
                    f"(num_classes={self.num_classes}), found {lowest}..{highest}"
                )

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def resolution(self) -> int:
        """Side of the (square) images in pixels."""
        return int(self.train.images.shape[2])


def _image_set(images: np.ndarray, labels: np.ndarray | list[int]) -> ImageSet:
    return ImageSet(
        images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
        labels=torch.as_tensor(np.asarray(labels, dtype=np.int64)),
    )


# ---------------------------------------------------------------- CIFAR


_CIFAR_LAYOUT = {
    100: ("cifar-100-python", ("train",), ("test",), "fine_labels", "meta", "fine_label_names"),
    10: (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "labels",
        "batches.meta",
        "label_names",
    ),
}


def _cifar_batch(data: bytes, source: str, label_key: str) -> tuple[np.ndarray, list[int]]:
    try:
        batch = load_array_pickle(data, source)
    except UnsafePickleError as error:
        raise DatasetError(f"corrupt CIFAR batch: {error}") from None
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise DatasetError(f"{source}: not a CIFAR batch (expected keys 'data' and '{label_key}')")
    images = np.asarray(batch["data"])
    try:
        # Python ints or numpy integers (batches re-saved from numpy arrays hold the latter).
        labels = [operator.index(label) for label in batch[label_key]]
    except TypeError:
        raise DatasetError(f"{source}: '{label_key}' must hold integer class labels") from None
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"{source}: expected 'data' as N x 3072 uint8, got {images.dtype} {images.shape}"
        )
    if len(labels) != images.shape[0]:
        raise DatasetError(f"{source}: {images.shape[0]} images but {len(labels)} labels")
    return images.reshape(-1, 3, 32, 32), labels


def _detect_variant(names: set[str]) -> int:
    for variant, (_, train, test, *_rest) in _CIFAR_LAYOUT.items():
        if set(train) | set(test) <= names:
            return variant
    raise DatasetError("")


def load_cifar(path: str | Path) -> Dataset:
    """Load CIFAR-100 or CIFAR-10 from the official python folder or its .tar.gz archive.

    Accepts the ``cifar-100-python`` / ``cifar-10-batches-py`` folder itself, a folder that
    contains it (the layout torchvision's download leaves), or the official archive
    ``cifar-100-python.tar.gz`` / ``cifar-10-python.tar.gz``. The variant is detected from the
    batch files present.

    Raises:
        DatasetError: the path holds neither layout, or a batch is corrupt.
    """
    path = Path(path)
    expected = (
        "a cifar-100-python folder (files 'train', 'test') or a cifar-10-batches-py folder "
        "(data_batch_1..5, test_batch), or the official .tar.gz archive"
    )
    if path.is_file():
        return _load_cifar_archive(path, expected)
    if not path.is_dir():
        raise DatasetError(f"dataset not found: {path} does not exist; expected {expected}")
    for folder, *_rest in _CIFAR_LAYOUT.values():
        if (path / folder).is_dir():
            return load_cifar(path / folder)
    files = {p.name: p for p in path.iterdir() if p.is_file()}
    try:
        variant = _detect_variant(set(files))
    except DatasetError:
        raise DatasetError(f"{path}: incomplete CIFAR folder; expected {expected}") from None
    return _assemble_cifar(variant, lambda name: files[name].read_bytes(), str(path))


def _load_cifar_archive(path: Path, expected: str) -> Dataset:
    try:
        with tarfile.open(path, "r:*") as archive:
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            try:
                variant = _detect_variant(set(members))
            except DatasetError:
                raise DatasetError(f"{path}: not a CIFAR archive; expected {expected}") from None

            def read(name: str) -> bytes:
                handle = archive.extractfile(members[name])
                if handle is None:
                    raise DatasetError(f"{path}: cannot read member {name}")
                return handle.read()

            return _assemble_cifar(variant, read, str(path))
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(f"{path}: corrupt archive ({error}); expected {expected}") from None


def _cifar_class_names(variant: int, read: object, where: str) -> tuple[str, ...]:
    """The class names of the batches' meta file; empty when it is absent or unreadable
    (the classes are then known by index only)."""
    _, _, _, _, meta, key = _CIFAR_LAYOUT[variant]
    try:
        names = load_array_pickle(read(meta), f"{where}/{meta}")[key]  # type: ignore[operator]
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except (KeyError, TypeError, UnsafePickleError, DatasetError, OSError):
        return ()
    return names if len(names) == variant else ()


def _assemble_cifar(variant: int, read: object, where: str) -> Dataset:
    _, train_names, test_names, label_key, _, _ = _CIFAR_LAYOUT[variant]
    sets = []
    for names in (train_names, test_names):
        parts = [_cifar_batch(read(n), f"{where}/{n}", label_key) for n in names]  # type: ignore[operator]
        images = np.concatenate([p[0] for p in parts])
        labels = [label for p in parts for label in p[1]]
        sets.append(_image_set(images, labels))
    logger.info("loaded CIFAR-%d from %s: %d train, %d test", variant, where, *map(len, sets))
    try:
        return Dataset(
            name=f"cifar{variant}",
            train=sets[0],
            test=sets[1],
            num_classes=variant,
            class_names=_cifar_class_names(variant, read, where),
        )
    except ValueError as error:  # labels out of range: name the files
        raise DatasetError(f"{where}: {error}") from None


# ---------------------------------------------------------------- image folders


def decode_square(file: Path, resolution: int, channels: int = 3) -> np.ndarray:
    """Decode an image file, resize its shorter side to ``resolution`` and centre-crop it.

    Returns:
        ``resolution x resolution x channels`` uint8 array.

    Raises:
        DatasetError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            width, height = image.size
            scale = resolution / min(width, height)
            new = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
            image = image.resize(new, Image.Resampling.BILINEAR)
            left = (new[0] - resolution) // 2
            top = (new[1] - resolution) // 2
            image = image.crop((left, top, left + resolution, top + resolution))
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{file}: unreadable image ({error})") from None
    return array.reshape(resolution, resolution, channels)


def class_folder_files(root: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """The image files under ``root/<class>/`` (sorted per class) and their int64 labels, the
    class index being the position of the folder's name in ``classes``."""
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        found = len(labels)
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in _IMAGE_SUFFIXES:
                files.append(file)
                labels.append(label)
        if len(labels) == found:
            logger.warning(
                "%s holds no image (%s): class %r has no examples in this part",
                folder,
                ", ".join(_IMAGE_SUFFIXES),
                name,
            )
    if not files:
        raise DatasetError(f"{root}: no images found in its class sub-folders")
    return files, np.asarray(labels, dtype=np.int64)


def image_folder_layout(
    root: Path, test_names: tuple[str, ...] = ("test", "val", "valid", "validation")
) -> tuple[list[str], Path]:
    """The sorted class names of ``root/train`` and the test part's folder.

    Raises:
        DatasetError: the folder, its ``train`` part or its test part is missing, or fewer
            than two classes.
    """
    expected = "sub-folders train/<class>/ and test/<class>/ (or val/) holding images"
    if not (root / "train").is_dir():
        raise DatasetError(f"dataset not found: {root / 'train'} is missing; expected {expected}")
    test_root = next((root / n for n in test_names if (root / n).is_dir()), None)
    if test_root is None:
        raise DatasetError(f"{root}: no test part ({'/'.join(test_names)}); expected {expected}")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DatasetError(f"{root / 'train'}: found {len(classes)} class folders, need >= 2")
    return classes, test_root


def _read_class_folders(
    root: Path, classes: list[str], resolution: int, channels: int
) -> ImageSet:
    files, labels = class_folder_files(root, classes)
    arrays = [decode_square(file, resolution, channels).transpose(2, 0, 1) for file in files]
    return _image_set(np.stack(arrays), labels)


def load_image_folder(
    root: str | Path,
    resolution: int = 32,
    channels: int = 3,
    test_names: tuple[str, ...] = ("test", "val", "valid", "validation"),
) -> Dataset:
    """Load an ImageNet-style folder: ``root/train/<class>/*.jpg`` and ``root/test/<class>/...``.

    Class indices follow the sorted class-folder names of ``train``. Each image is resized so
    that its shorter side is ``resolution`` pixels and centre-cropped to a square. The test
    part may be named ``test``, ``val``, ``valid`` or ``validation``. Every image is held in
    memory; for folders too large for that, see ``kdnas.data.StreamingFolder``.

    Horizontal flips are taken to preserve the classes of colour photographs, not of
    grayscale images (digits, letters, documents: a mirrored symbol is another symbol or
    none), so ``flip_invariant`` is False when every training image is gray (one channel, or
    three equal ones). The training protocol's flips follow it unless set explicitly
    (``TrainConfig.horizontal_flip``, ``kdnas search --flip/--no-flip``).

    Raises:
        DatasetError: the folder, its ``train`` part or its test part is missing or empty.
    """
    root = Path(root)
    if resolution < 1 or channels not in (1, 3):
        raise ValueError(f"need resolution >= 1 and channels 1 or 3, got {resolution}, {channels}")
    classes, test_root = image_folder_layout(root, test_names)
    train = _read_class_folders(root / "train", classes, resolution, channels)
    test = _read_class_folders(test_root, classes, resolution, channels)
    gray = _is_gray(train.images) and _is_gray(test.images)
    return Dataset(
        name=root.name,
        train=_one_channel(train) if gray else train,
        test=_one_channel(test) if gray else test,
        num_classes=len(classes),
        flip_invariant=not gray,
        class_names=tuple(classes),
    )


def _is_gray(pixels: torch.Tensor) -> bool:
    return pixels.shape[1] == 1 or bool(
        (pixels[:, 0] == pixels[:, 1]).all() and (pixels[:, 1] == pixels[:, 2]).all()
    )


def _one_channel(images: ImageSet) -> ImageSet:
    """Gray images as one channel: three equal channels carry nothing more, and a network
    built for one input channel is what a user with grayscale images expects."""
    return ImageSet(images.images[:, :1].contiguous(), images.labels)


def flat_class_folders(root: Path) -> list[str]:
    """The sorted names of ``root``'s sub-folders that hold images directly (a flat
    ``<class>/`` folder), hidden ones left out; empty when there are none."""
    if not root.is_dir():
        return []
    return sorted(
        folder.name
        for folder in root.iterdir()
        if folder.is_dir()
        and not folder.name.startswith(".")
        and any(f.suffix.lower() in _IMAGE_SUFFIXES for f in folder.iterdir())
    )


def stratified_test_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask choosing round(fraction * n_c) of every class c as the test part: each
    class's positions shuffled with one generator of ``seed``, classes in sorted order."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen = rng.permutation(members)[: round(len(members) * fraction)]
        is_test[chosen] = True
    return is_test


def load_flat_image_folder(
    root: str | Path,
    resolution: int = 32,
    test_fraction: float = FLAT_TEST_FRACTION,
    split_seed: int = FLAT_SPLIT_SEED,
) -> Dataset:
    """Load a flat folder ``root/<class>/*.png`` and split it into train and test.

    The split is deterministic and stratified: ``round(test_fraction * n_c)`` images of every
    class go to the test part, drawn with ``split_seed`` over the files sorted by name (the
    same split on every machine, and the same whatever order the file system lists them in).
    It is recorded in ``Dataset.split``. Gray images stay one channel; images are resized and
    centre-cropped as by ``load_image_folder``.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1).
        DatasetError: fewer than two class folders, or a class with too few images to give
            both parts at least one.
    """
    root = Path(root)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must lie in (0, 1), got {test_fraction!r}")
    classes = flat_class_folders(root)
    if len(classes) < 2:
        raise DatasetError(f"{root}: found {len(classes)} class folders holding images, need >= 2")
    files, labels = class_folder_files(root, classes)
    is_test = stratified_test_mask(labels, test_fraction, split_seed)
    for label, name in enumerate(classes):
        members = labels == label
        if not is_test[members].any() or is_test[members].all():
            raise DatasetError(
                f"{root / name}: {int(members.sum())} images cannot give both the train and "
                f"the test part one (test fraction {test_fraction:g}); add images or change "
                f"--test-fraction"
            )
    arrays = np.stack([decode_square(f, resolution, 3).transpose(2, 0, 1) for f in files])
    images = _image_set(arrays, labels)
    gray = _is_gray(images.images)
    if gray:
        images = _one_channel(images)
    test = torch.from_numpy(is_test)
    return Dataset(
        name=root.name,
        train=ImageSet(images.images[~test], images.labels[~test]),
        test=ImageSet(images.images[test], images.labels[test]),
        num_classes=len(classes),
        flip_invariant=not gray,
        split={"test_fraction": float(test_fraction), "seed": int(split_seed)},
    )


# ---------------------------------------------------------------- embedded


def load_digits() -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 grayscale 8x8 images of 10 classes.

    The pixel values 0-16 are rescaled to 0-255. scikit-learn ships no split, so a fixed
    class-stratified 20 % test split is drawn with seed 0 (the same on every machine).
    The images stay 8x8 here; ``prepare`` upsamples them to ``DIGITS_RESOLUTION`` (16) unless
    given another resolution.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    is_test = stratified_test_mask(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return Dataset(
        name="digits",
        train=_image_set(images[~is_test], labels[~is_test]),
        test=_image_set(images[is_test], labels[is_test]),
        num_classes=10,
        flip_invariant=False,
        default_resolution=DIGITS_RESOLUTION,
        class_names=tuple(str(digit) for digit in range(10)),
    )


def load_dataset(
    spec: str | Path, resolution: int | None = None, test_fraction: float | None = None
) -> Dataset:
    """Load a dataset by name or path.

    Args:
        spec: "digits" (embedded), or a path to a CIFAR folder/archive, an image folder with
            ``train/`` and ``test/`` (or ``val/``) parts, or a flat ``<class>/`` folder.
        resolution: image side for image folders (default 32); ignored by the others.
        test_fraction: share of every class a flat folder gives its test part (default
            ``FLAT_TEST_FRACTION``); refused for a dataset that has its own test part.

    Raises:
        DatasetError: unknown name, missing path, or a folder of no known layout.
        ValueError: ``test_fraction`` for a dataset with its own test part.
    """
    text = str(spec)
    path = Path(text).expanduser()
    flat = text != "digits" and path.is_dir() and not (path / "train").is_dir()
    flat = flat and bool(flat_class_folders(path))
    if test_fraction is not None and not flat:
        raise ValueError(
            f"--test-fraction splits a flat <class>/ image folder; {text} has its own test part"
        )
    if text == "digits":
        return load_digits()
    if not path.exists():
        raise DatasetError(
            f"dataset not found: {path} does not exist; expected {'; '.join(DATASET_FORMS)}"
        )
    if path.is_dir() and (path / "train").is_dir():
        return load_image_folder(path, resolution=resolution or 32)
    if flat:
        return load_flat_image_folder(
            path,
            resolution=resolution or 32,
            test_fraction=FLAT_TEST_FRACTION if test_fraction is None else test_fraction,
        )
    try:
        return load_cifar(path)
    except DatasetError as error:
        if not path.is_dir() or "incomplete CIFAR folder" not in str(error):
            raise
        raise DatasetError(
            f"{path}: no dataset found there; expected {'; '.join(DATASET_FORMS)}"
        ) from None
