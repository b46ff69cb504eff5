"""The data a search trains its proxies on, named by a spec string.

- ``fashion-mnist``: the four IDX files of Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/
  fashion-mnist``), or of ``$NAS_DATA_DIR`` (directly or in its ``fashion-mnist/`` folder);
- ``cifar10:PATH``: the python-pickle batches (``data_batch_1..5``, ``test_batch``) or an ImageFolder tree, as a
  folder or as a ``.tar.gz`` of one (extracted once into the cache, e.g. the official ``cifar-10-python.tar.gz``);
- ``imagefolder:PATH``: ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` (or ``test/``; an ImageNet-layout
  tree's ``val/`` is its test split).

Every dataset has three splits. *test* is the source's own held-out split (Fashion-MNIST's t10k, CIFAR-10's
``test_batch``, the tree's ``val/`` or ``test/``): only final evaluations read it. *val* is a fixed, stratified
hold-out carved from the source's training split (``holdout``), on which a search selects and prunes; *train* is
the rest. Selecting on the test split would report the maximum of its noise as accuracy.

Images are decoded once into uint8 arrays (N, H, W, C) and cached on disk (``$NAS_CACHE_DIR``, default
``~/.cache/swiftnas``), so later trials and later runs do not decode again. Unreadable images are reported and
skipped; a missing or malformed dataset is an error naming the path and the layout expected.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import replacing
from ..progress import progress

logger = logging.getLogger(__name__)

MAX_STORED_SIDE = 64  # a tree of photographs is held at this side (ImageNet-sized trees stream from disk instead)
RESIDENT_BUDGET_BYTES = 8 * 2**30  # the most a dataset may take as uint8 to be held in memory and on the device
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                       "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the path and the layout expected."""


@dataclass
class ImageData:
    """Decoded images, uint8 (N, H, W, C), with integer labels: the source's training and test splits."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    skipped: int = 0  # unreadable images left out

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[-1])

    def fingerprint(self) -> str:
        """A hash of the decoded images, labels and class names (16 hex digits): two runs with the same
        fingerprint saw the same pixels, whatever path or archive they were read from."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update("|".join(self.classes).encode())
        for array in (self.train_x, self.train_y, self.test_x, self.test_y):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()

    def holdout(self, fraction: float, seed: int) -> "Holdout":
        """The train/val split of the source's training images: ``fraction`` of each class, chosen by ``seed``."""
        return holdout(self.train_y, fraction, seed)


@dataclass(frozen=True)
class Holdout:
    """Indices into ``ImageData.train_*``: the images a model trains on and the validation images."""

    train: np.ndarray
    val: np.ndarray
    fraction: float
    seed: int

    def describe(self) -> str:
        return f"{len(self.train)} train / {len(self.val)} val (stratified {self.fraction:g} hold-out, seed {self.seed})"


def holdout(labels: np.ndarray, fraction: float, seed: int) -> Holdout:
    """``fraction`` of each class of ``labels`` held out for validation, chosen by ``seed``: one rule for every
    command, so a retraining validates on the images its search selected on."""
    if not 0 < fraction < 1:
        raise DatasetError(f"validation fraction {fraction!r} must be between 0 and 1 (exclusive)")
    rng = np.random.default_rng(seed)
    val = stratified(labels, max(len(np.unique(labels)), round(fraction * len(labels))), rng)
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return Holdout(train, val, fraction, seed)


def stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted indices with the classes in their dataset proportions (all indices if ``n`` covers the set)."""
    if n >= len(labels):
        return np.arange(len(labels))
    chosen = []
    classes, counts = np.unique(labels, return_counts=True)
    for cls, count in zip(classes, counts):
        take = max(1, round(n * count / len(labels)))
        chosen.append(rng.choice(np.flatnonzero(labels == cls), size=min(take, count), replace=False))
    return np.sort(np.concatenate(chosen))


def load_data(spec: str, image_size: int | None = None) -> ImageData:
    """Load (or fetch from the cache) the dataset named by ``spec``.

    ``image_size`` is the side ImageFolder images are decoded to (centre crop of the shorter side, then
    resize); None keeps the stored size: the first image's shorter side (CIFAR-10's trees: 32 px), at most
    ``MAX_STORED_SIDE``. IDX and pickle datasets keep their native size. Trainings resize on their device to the
    side they train at, so one decode serves every side.
    """
    kind, root, name = resolve_spec(spec)
    if kind == "fashion-mnist":
        return _fashion_mnist()
    if kind == "cifar-pickle":
        return _cifar_pickle(root)
    return _image_folder(root, image_size, name=name)


def resolve_spec(spec: str) -> tuple[str, Path | None, str]:
    """What a spec names: (``fashion-mnist`` | ``cifar-pickle`` | ``tree``, its folder, the data's name)."""
    kind, _, path = spec.partition(":")
    if kind == "fashion-mnist" and not path:
        return "fashion-mnist", None, "fashion-mnist"
    if kind == "cifar10" and path:
        root = Path(path).expanduser()
        if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
            root = _extracted(root)
        for folder in [root, *(sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])]:
            if (folder / "data_batch_1").exists():
                return "cifar-pickle", folder, "cifar10"
            if (folder / "train").is_dir():
                return "tree", folder, "cifar10"
        raise DatasetError(f"cifar10:{path}: expected the python batches (data_batch_1..5, test_batch) or an "
                           f"ImageFolder tree (train/<class>/*.jpg and test/ or val/), as a folder or a .tar.gz, "
                           "found neither")
    if kind == "imagefolder" and path:
        return "tree", Path(path).expanduser(), "imagefolder"
    raise DatasetError(f"unknown data spec {spec!r}; accepted: fashion-mnist, cifar10:PATH, imagefolder:PATH")


def _cache_dir() -> Path:
    folder = Path(os.environ.get("NAS_CACHE_DIR", Path.home() / ".cache" / "swiftnas"))
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise DatasetError(f"the data cache {folder} cannot be made: {part} is a file; move it aside or set "
                               "NAS_CACHE_DIR to a folder")
    return folder


def _extracted(archive: Path) -> Path:
    """The archive's contents, extracted once into the cache (atomically: a killed extraction is redone)."""
    stat = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = _cache_dir() / f"extracted-{key}"
    if not target.is_dir():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        logger.info(f"extracting {archive} into {target}")
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(partial, filter="data")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno is not None:  # not the archive's fault: say what the system said
                raise DatasetError(f"cannot read {archive} ({exc.strerror}); give cifar10: a readable archive, or "
                                   "free space in the cache (NAS_CACHE_DIR) if it is full") from None
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":")
            raise DatasetError(f"cannot extract {archive} ({first}): the archive is truncated or damaged; download "
                               "it again (nothing was kept from it)") from None
        partial.rename(target)
    return target


# ------------------------------------------------------------------------------------------------- IDX files
def _fashion_mnist() -> ImageData:
    candidates = []
    if os.environ.get("NAS_DATA_DIR"):
        base = Path(os.environ["NAS_DATA_DIR"]).expanduser()
        candidates += [base / "fashion-mnist", base]
    candidates.append(DEBIAN_FASHION_MNIST)
    for folder in candidates:
        if all((folder / f).is_file() for f in FASHION_MNIST_FILES):
            break
    else:
        where = " or ".join(str(c) for c in candidates)
        raise DatasetError(f"Fashion-MNIST not found in {where}: expected {', '.join(FASHION_MNIST_FILES)}; "
                           "install Debian's dataset-fashion-mnist (make test does, as root) or set NAS_DATA_DIR")
    arrays = [_read_idx(folder / f) for f in FASHION_MNIST_FILES]
    return ImageData("fashion-mnist", arrays[0][..., None], arrays[1].astype(np.int64), arrays[2][..., None],
                     arrays[3].astype(np.int64), FASHION_MNIST_CLASSES)


def _read_idx(path: Path) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read IDX data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: truncated IDX file ({data.size} values for shape {shape})")
    return data.reshape(shape)


# ---------------------------------------------------------------------------------------------- CIFAR pickles
def _cifar_pickle(root: Path) -> ImageData:
    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = root / name
        try:
            with path.open("rb") as handle:
                entry = pickle.load(handle, encoding="bytes")
            x = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return x, np.asarray(entry[b"labels"], dtype=np.int64)
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise DatasetError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}); expected the "
                               "cifar-10-batches-py files data_batch_1..5 and test_batch") from None

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = batch("test_batch")
    return ImageData("cifar10", np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                     test_x, test_y, CIFAR10_CLASSES)


# ---------------------------------------------------------------------------------------------- ImageFolder
def tree_files(root: Path, name: str) -> tuple[tuple[str, ...], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """An ImageFolder tree's classes, training files and test files (its ``val/`` or ``test/``), labelled."""
    layout = f"{root}/train/<class>/<image> and {root}/val/<class>/<image> (or test/)"
    if not root.is_dir():
        raise DatasetError(f"{name}:{root}: no such directory; expected {layout}")
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise DatasetError(f"{name}:{root}: expected {layout}")
    classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise DatasetError(f"{name}:{root}/train: needs at least two class folders, found {len(classes)}")
    train_files = _list_images(root / "train", classes)
    test_files = _list_images(test_dir, classes)
    if not train_files or not test_files:
        raise DatasetError(f"{name}:{root}: no images found; expected {layout}")
    return classes, train_files, test_files


def _image_folder(root: Path, image_size: int | None, name: str) -> ImageData:
    classes, train_files, test_files = tree_files(root, name)
    if image_size is None:
        image_size = min(MAX_STORED_SIDE, first_side(train_files[0][0]))
    cache = _cache_path(root, image_size, train_files + test_files)
    if cache.exists():
        try:
            with np.load(cache) as saved:
                if "test_x" in saved:  # (caches written before the three-way split named it val_x: decoded again)
                    return ImageData(name, saved["train_x"], saved["train_y"], saved["test_x"], saved["test_y"],
                                     classes, int(saved["skipped"]))
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # a cache: decoded again
            logger.info(f"the decoded images' cache {cache} is unreadable ({type(exc).__name__}): decoding the images "
                  "again")
    train_x, train_y, bad_train = _decode(train_files, image_size)
    test_x, test_y, bad_test = _decode(test_files, image_size)
    bad = bad_train + bad_test
    if bad:
        logger.warning(f"warning: {len(bad)} unreadable image(s) skipped, e.g. {bad[0]}")
    data = ImageData(name, train_x, train_y, test_x, test_y, classes, len(bad))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with replacing(cache) as tmp:  # whole or not at all: a killed run never leaves a half-written cache
        np.savez(tmp, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, skipped=len(bad))
    return data


def _list_images(folder: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    files = []
    for label, cls in enumerate(classes):
        if (folder / cls).is_dir():
            files += [(p, label) for p in sorted((folder / cls).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    return files


def first_side(path: Path) -> int:
    """The shorter side of a tree's first image (``MAX_STORED_SIDE`` if it cannot be read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return min(image.size)
    except (OSError, UnidentifiedImageError, ValueError):
        return MAX_STORED_SIDE


def _decode_chunk(files: list[tuple[str, int]], size: int) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Decode, centre-crop and resize one chunk of files (in a worker process)."""
    from PIL import Image, UnidentifiedImageError

    images, labels, bad = [], [], []
    for path, label in files:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                side = min(image.size)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side))
                if image.size != (size, size):
                    image = image.resize((size, size), Image.BILINEAR)
                images.append(np.asarray(image, dtype=np.uint8))
                labels.append(label)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            bad.append(f"{path} ({type(exc).__name__})")
    return images, labels, bad


def _decode(files: list[tuple[Path, int]], size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every file decoded at ``size``, in parallel over the machine's cores (a spawned pool: safe beside CUDA
    and OpenMP), in file order."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    total = len(files)
    workers = max(1, min(os.cpu_count() or 1, 16, total // 2000))
    chunk = max(1, -(-total // (workers * 8)))
    parts = [[(str(p), label) for p, label in files[i: i + chunk]] for i in range(0, total, chunk)]
    report = progress(f"decoding {files[0][0].parent.parent.name} images ({workers} process(es))")
    images, labels, bad = [], [], []
    if workers == 1:
        results = (_decode_chunk(part, size) for part in parts)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_decode_chunk, parts, [size] * len(parts))
    try:
        done = 0
        for part, (part_images, part_labels, part_bad) in zip(parts, results):
            images += part_images
            labels += part_labels
            bad += part_bad
            done += len(part)
            report(done, total)
    finally:
        if pool is not None:
            pool.shutdown()
    if not images:
        raise DatasetError(f"none of the {total} images under {files[0][0].parent.parent} could be read")
    return np.stack(images), np.asarray(labels, dtype=np.int64), bad


def _cache_path(root: Path, size: int, files: list[tuple[Path, int]]) -> Path:
    digest = hashlib.sha1(f"{root.resolve()}|{size}|{len(files)}".encode())
    for path, label in files[:: max(1, len(files) // 200)]:  # a sample of names, sizes and times: cheap to check
        stat = path.stat()
        digest.update(f"{path.name}|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return _cache_dir() / f"images-{digest.hexdigest()[:16]}.npz"
