"""The data: labelled image datasets as numpy arrays, from TFDS, IDX files, image folders, or the
MNIST subset shipped in the package.

`load_data(source, data_dir, name)` returns a `Dataset`: uint8 images `[N, H, W, C]` and int32
labels `[N]` for a train and a test split, whichever source serves them. `name` is the dataset's
name ('mnist' by default; a TFDS name such as 'fashion_mnist', 'kmnist' or 'cifar10'): 'tfds'
reads the dataset of that name, the file sources only use it in descriptions and checks.
`load_mnist(source, data_dir)` is `load_data(source, data_dir, 'mnist')`.

- 'tfds': `tfds.data_source(name)`, the array_record random-access reader that needs no
  TensorFlow, of a dataset prepared on disk with features 'image' and 'label' and splits 'train'
  and 'test'. `prepare_tfds` (or `python -m bigran_jax.data --idx_dir=... --data_dir=...`) builds
  MNIST offline from the four IDX files, since TFDS's own MNIST builder needs the network and
  TensorFlow; other datasets are prepared with `tfds build NAME --file_format=array_record`.
  TFDS shuffles record order when it writes, so its order is not the IDX order.
- 'idx': a folder with the four files named as MNIST's (`train-images-idx3-ubyte` ..., plain or
  `.gz`; Fashion-MNIST and KMNIST ship the same names). Images are uint8 IDX of 3 dimensions
  `[N, H, W]` (C = 1) or 4 `[N, H, W, C]`, of any size shared by both splits; labels uint8 `[N]`.
- 'folder': `data_dir/train/<class>/<image>` and `data_dir/test/<class>/<image>` (PNG, JPEG, BMP
  or GIF, read with Pillow); the classes are train's sorted sub-folder names, a label is the index
  of its class there, and every image must have the same shape.
- 'embedded': 10,000 train and 2,000 test MNIST images, class-balanced, shipped as gzipped IDX in
  `bigran_jax/mnist_subset/` (see its `manifest.json` and `scripts/make_mnist_subset.py`), so that
  tests and quick runs need no download. MNIST only.
- 'auto': 'tfds' when `name` is prepared on disk in `data_dir` (TFDS's default data dir when
  `data_dir` is ''), else 'embedded' for MNIST and an error saying how to prepare it for any other
  name. It only looks at files: it never downloads or waits on the network.

What training draws from these arrays, on device, is in `bigran_jax.samplers`.

`tensorflow_datasets` and Pillow are imported inside the functions that need them: importing this
module stays fast, and 'idx' and 'embedded' work where TFDS is broken or absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gzip
import hashlib
import importlib.resources
import json
import os
import re
import tempfile
import time
import zlib
from collections.abc import Sequence
from typing import cast

import numpy as np
from absl import logging

SOURCES = ('auto', 'tfds', 'idx', 'embedded', 'folder')

# Magic numbers of IDX image and label files: 0x0803 is "unsigned bytes, 3 dimensions" (MNIST's
# `[N, 28, 28]`), 0x0804 "unsigned bytes, 4 dimensions" (`[N, H, W, C]`) and 0x0801 "unsigned
# bytes, 1 dimension" in the IDX format.
IMAGES_MAGIC = 2051
IMAGES4_MAGIC = 2052
LABELS_MAGIC = 2049
IMAGE_SIDE = 28  # MNIST's pixels per side (models.IMAGE_SIZE is the flattened 784)
NUM_CLASSES = 10  # MNIST's
# File stems of the two splits in a standard MNIST folder (each may carry a '.gz' suffix).
IDX_STEMS = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
# File name endings (any case) that source 'folder' reads as images; it skips other files.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif')

# IDX element type codes (third byte of the magic number); IDX stores everything big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}

_EMBEDDED_PACKAGE = 'bigran_jax'
_EMBEDDED_FOLDER = 'mnist_subset'
_MANIFEST = 'manifest.json'
_TFDS_NAME = 'mnist'
# Records read per `__getitems__` call: large enough to amortise the per-call overhead, small
# enough that the decoded dicts of one chunk stay a few MB.
_TFDS_CHUNK = 10_000
_PREPARE_COMMAND = 'python -m bigran_jax.data --idx_dir=DIR_WITH_MNIST_IDX_FILES --data_dir={}'
# A TFDS-style dataset name, optionally with its config ('mnist', 'cifar10', 'mnist_corrupted/
# shot_noise'); it becomes a folder under the TFDS data dir.
_NAME_PATTERN = r'[\w-]+(/[\w.-]+)?'


class DataError(ValueError):
    """A data source is missing, not prepared, or holds malformed data."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled image dataset as numpy arrays.

    Attributes:
      train_images: uint8 `[N, H, W, C]`, C >= 1 (1 for grayscale); MNIST's are `[N, 28, 28, 1]`,
        0 (background) to 255.
      train_labels: int32 `[N]`, class indices from 0 (MNIST's: the digits 0..9).
      test_images: uint8 `[M, H, W, C]`, the same `H, W, C` as `train_images`.
      test_labels: int32 `[M]`.
      source: the source that served the data: 'tfds', 'idx', 'folder' or 'embedded'.
      description: one line for logs, naming the dataset, the source, its location and the
        counts.
      name: the dataset's name, e.g. 'mnist', 'fashion_mnist' or 'cifar10'.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    description: str
    name: str = 'mnist'

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(H, W, C)` of one image."""
        # The images are `[N, H, W, C]` (see the class docstring), so the shape has three parts.
        return cast(tuple[int, int, int], tuple(int(n) for n in self.train_images.shape[1:]))

    @property
    def num_classes(self) -> int:
        """The largest label of either split plus one; 1 when there are no labels."""
        largest = [int(labels.max()) for labels in (self.train_labels, self.test_labels)
                   if labels.size]
        return max([0, *largest]) + 1


# The old name: code and pickles written before datasets other than MNIST use it.
MNIST = Dataset


def _title(name: str) -> str:
    """How descriptions and errors call the dataset `name`: 'MNIST' for mnist, else `name`."""
    return 'MNIST' if name == _TFDS_NAME else name


def _shape_text(shape: Sequence[int]) -> str:
    return 'x'.join(str(n) for n in shape)


def _dataset(train_images, train_labels, test_images, test_labels, *, source, where, name,
             details='') -> Dataset:
    description = (f'{_title(name)} from {where}: {len(train_images)} train, '
                   f'{len(test_images)} test images{details}')
    return Dataset(train_images, train_labels, test_images, test_labels, source, description,
                   name)


# ----------------------------------------------------------------------------------------------
# IDX files.


def _parse_idx(data: bytes, name: str) -> tuple[int, np.ndarray]:
    """Parses the bytes of one (uncompressed) IDX file; `name` is what errors call it."""
    if len(data) < 4:
        raise DataError(f'{name}: truncated IDX file: {len(data)} bytes, shorter than a header')
    magic = int.from_bytes(data[:4], 'big')
    code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f'{name}: bad magic number {magic} (0x{magic:08x}): not an IDX file')
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f'{name}: truncated IDX file: {len(data)} bytes, header needs {header}')
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = 'truncated' if len(data) < expected else 'has trailing bytes'
        raise DataError(
            f'{name}: {problem}: {len(data)} bytes, but its header {shape} asks for {expected}')
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # A native-endian, writable copy: callers may modify it, and jax wants native byte order.
    return magic, array.astype(dtype.newbyteorder('='), copy=True)


def _read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a file, decompressed when its name ends in '.gz'."""
    path = os.fspath(path)
    try:
        if path.endswith('.gz'):
            with gzip.open(path, 'rb') as f:
                return f.read()
        with open(path, 'rb') as f:
            return f.read()
    except FileNotFoundError as e:
        raise DataError(f'{path}: file not found') from e
    except (OSError, EOFError, zlib.error) as e:
        # A cut-off download surfaces here as EOFError from gzip.
        raise DataError(f'{path}: cannot read: {e}') from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (gzipped when `path` ends in '.gz').

    Args:
      path: the file.

    Returns:
      The array with the file's shape and element type (native byte order), e.g. uint8
      `[60000, 28, 28]` for `train-images-idx3-ubyte`.

    Raises:
      DataError: naming `path`, when it is missing, not IDX, or its length does not match its
        header.
    """
    return _parse_idx(_read_bytes(path), os.fspath(path))[1]


def _idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array)
    codes = {dtype.newbyteorder('='): code for code, dtype in _IDX_DTYPES.items()}
    native = array.dtype.newbyteorder('=')
    if native not in codes or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f'IDX cannot store a {array.dtype} array of {array.ndim} dimensions')
    header = bytes([0, 0, codes[native], array.ndim])
    header += b''.join(int(n).to_bytes(4, 'big') for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[codes[native]]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes `array` as one IDX file, gzipped when `path` ends in '.gz'.

    The gzip header holds no time stamp or file name, so the same array always gives the same bytes
    (the embedded subset's manifest records their SHA-256).

    Args:
      path: the file to write.
      array: any shape; uint8, int8, int16, int32, float32 or float64. Standard MNIST image files
        hold uint8 `[N, 28, 28]` and label files uint8 `[N]`.
    """
    data = _idx_bytes(array)
    path = os.fspath(path)
    with open(path, 'wb') as f:
        if path.endswith('.gz'):
            with gzip.GzipFile(filename='', mode='wb', fileobj=f, compresslevel=9, mtime=0) as g:
                g.write(data)
        else:
            f.write(data)


def _split_arrays(images_magic: tuple[int, np.ndarray], labels_magic: tuple[int, np.ndarray],
                  images_name: str, labels_name: str,
                  name: str = _TFDS_NAME) -> tuple[np.ndarray, np.ndarray]:
    """Checks one split's parsed image and label files; returns `[N, H, W, C]`, `[N]` int32."""
    magic, images = images_magic
    if magic not in (IMAGES_MAGIC, IMAGES4_MAGIC):
        # MNIST's message names only its own kind of file, 3 dimensions.
        expected = (f'{IMAGES_MAGIC} for MNIST images: uint8, 3 dimensions' if name == _TFDS_NAME
                    else f'{IMAGES_MAGIC} or {IMAGES4_MAGIC} for {name} images: uint8, 3 or 4 '
                    'dimensions')
        raise DataError(f'{images_name}: bad magic number {magic} (expected {expected})')
    if name == _TFDS_NAME and images.shape[1:] not in ((IMAGE_SIDE, IMAGE_SIDE),
                                                       (IMAGE_SIDE, IMAGE_SIDE, 1)):
        raise DataError(f'{images_name}: images are {images.shape[1:]}, expected 28 x 28 (MNIST; '
                        'for another dataset set data.name)')
    if images.ndim == 3:
        images = images[..., None]
    if 0 in images.shape[1:]:
        raise DataError(f'{images_name}: images of shape {_shape_text(images.shape[1:])} hold '
                        'no pixels')
    magic, labels = labels_magic
    if magic != LABELS_MAGIC:
        raise DataError(f'{labels_name}: bad magic number {magic} (expected {LABELS_MAGIC} for '
                        f'{_title(name)} labels: uint8, 1 dimension)')
    if len(labels) != len(images):
        raise DataError(f'{labels_name}: {len(labels)} labels, but {images_name} has '
                        f'{len(images)} images')
    if name == _TFDS_NAME and len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(f'{labels_name}: label {labels.max()} is not a digit 0..9')
    return images, labels.astype(np.int32)


def _find_idx_file(folder: str, stem: str, name: str = _TFDS_NAME) -> str:
    # The plain file first: it needs no decompression.
    for file in (stem, stem + '.gz'):
        if os.path.isfile(os.path.join(folder, file)):
            return os.path.join(folder, file)
    raise DataError(f'{os.path.join(folder, stem)}[.gz]: file not found in {_title(name)} IDX '
                    'folder')


def _load_idx(data_dir: str, name: str = _TFDS_NAME) -> Dataset:
    if not data_dir:
        raise DataError(f"source 'idx' needs data_dir: a folder with the four {_title(name)} IDX "
                        'files')
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: {_title(name)} IDX folder not found')
    arrays: list[np.ndarray] = []
    images_paths: list[str] = []
    for split in ('train', 'test'):
        paths = [_find_idx_file(data_dir, stem, name) for stem in IDX_STEMS[split]]
        parsed = [_parse_idx(_read_bytes(p), p) for p in paths]
        arrays.extend(_split_arrays(parsed[0], parsed[1], paths[0], paths[1], name=name))
        images_paths.append(paths[0])
    train_shape, test_shape = arrays[0].shape[1:], arrays[2].shape[1:]
    if train_shape != test_shape:
        raise DataError(f'{images_paths[1]}: images are {_shape_text(test_shape)}, but '
                        f'{images_paths[0]} holds {_shape_text(train_shape)}: train and test '
                        'must share one shape')
    return _dataset(*arrays, source='idx', where=f'idx folder {data_dir}', name=name)


# ----------------------------------------------------------------------------------------------
# Folders of image files.


def _subfolders(folder: str) -> list[str]:
    """The sorted names of `folder`'s sub-folders, hidden ones ('.ipynb_checkpoints') left out."""
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.is_dir() and not entry.name.startswith('.'))


def _image_files(folder: str) -> list[str]:
    """The image files (`IMAGE_EXTENSIONS`) in `folder`, sorted by name."""
    files = sorted(entry.path for entry in os.scandir(folder)
                   if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DataError(f'{folder}: class folder holds no image files '
                        f'({" ".join(IMAGE_EXTENSIONS)})')
    return files


def _read_image(path: str) -> tuple[np.ndarray, bool]:
    """One image file as uint8 `[H, W, C]`, and whether Pillow had to convert it to 'RGB'.

    Mode 'L' gives C = 1, 'RGB' 3, 'RGBA' 4; any other mode ('P' as GIFs load, '1', 'I;16', ...)
    is converted to 'RGB'.
    """
    from PIL import Image  # Lazy: see the module docstring.

    try:
        with Image.open(path) as image:
            converted = image.mode not in ('L', 'RGB', 'RGBA')
            array = np.asarray(image.convert('RGB') if converted else image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f'{path}: cannot read the image: {e}'.replace('\n', ' ')) from e
    return (array[..., None] if array.ndim == 2 else array), converted


def _load_folder(data_dir: str, name: str) -> Dataset:
    layout = 'train/<class>/<image> and test/<class>/<image>'
    if not data_dir:
        raise DataError(f"source 'folder' needs data_dir: a folder with {layout}")
    if not os.path.isdir(data_dir):
        raise DataError(f'{data_dir}: image folder not found')
    folders = {split: os.path.join(data_dir, split) for split in ('train', 'test')}
    for folder in folders.values():
        if not os.path.isdir(folder):
            raise DataError(f'{folder}: folder not found; source folder reads {layout}')
    classes = _subfolders(folders['train'])
    test_classes = _subfolders(folders['test'])
    for folder, found in ((folders['train'], classes), (folders['test'], test_classes)):
        if not found:
            raise DataError(f'{folder}: no class folders; source folder reads {layout}')
    for cls in test_classes:
        if cls not in classes:
            raise DataError(f'{os.path.join(folders["test"], cls)}: class {cls!r} is not among '
                            f'the train classes ({", ".join(classes)})')
    paths, images, converted, labels = [], [], [], {}
    for split, folder in folders.items():
        split_labels = []
        for label, cls in enumerate(classes):
            if not os.path.isdir(os.path.join(folder, cls)):
                continue  # The test split may lack classes.
            for path in _image_files(os.path.join(folder, cls)):
                image, was_converted = _read_image(path)
                paths.append(path)
                images.append(image)
                converted.append(was_converted)
                split_labels.append(label)
        labels[split] = np.array(split_labels, np.int32)
    # A folder of grayscale images (mode 'L', or converted with three equal channels, as a
    # grayscale GIF or a mode '1' PNG) keeps one channel.
    if all(image.shape[-1] == 1 or (was_converted and np.all(image == image[..., :1]))
           for image, was_converted in zip(images, converted, strict=True)):
        images = [image[..., :1] for image in images]
    for path, image in zip(paths, images, strict=True):
        if image.shape != images[0].shape:
            raise DataError(f'{path}: image is {_shape_text(image.shape)}, but {paths[0]} is '
                            f'{_shape_text(images[0].shape)}: all images must share one shape')
    n_train = len(labels['train'])
    details = f' of {_shape_text(images[0].shape)}, {len(classes)} classes'
    return _dataset(np.stack(images[:n_train]), labels['train'], np.stack(images[n_train:]),
                    labels['test'], source='folder', where=f'folder {data_dir}', name=name,
                    details=details)


# ----------------------------------------------------------------------------------------------
# The subset shipped in the package.


def _embedded_files():
    return importlib.resources.files(_EMBEDDED_PACKAGE).joinpath(_EMBEDDED_FOLDER)


def embedded_manifest() -> dict:
    """The embedded subset's `manifest.json`: its seed, index lists, counts and checksums."""
    return json.loads(_embedded_files().joinpath(_MANIFEST).read_text())


def _load_embedded() -> Dataset:
    folder = _embedded_files()
    try:
        manifest = embedded_manifest()
    except (OSError, ValueError) as e:
        raise DataError(f'{folder}/{_MANIFEST}: cannot read the embedded subset: {e}') from e
    arrays: list[np.ndarray] = []
    for split in ('train', 'test'):
        entry = manifest['splits'][split]
        parsed: list[tuple[int, np.ndarray]] = []
        names: list[str] = []
        for kind in ('images', 'labels'):
            file = entry[f'{kind}_file']
            name = f'{_EMBEDDED_PACKAGE}/{_EMBEDDED_FOLDER}/{file}'
            try:
                compressed = folder.joinpath(file).read_bytes()
            except OSError as e:
                raise DataError(f'{name}: cannot read the embedded subset: {e}') from e
            # The check costs milliseconds and turns a damaged install (or a Git LFS pointer in
            # place of the file) into a clear error instead of odd data.
            if hashlib.sha256(compressed).hexdigest() != entry[f'{kind}_sha256']:
                raise DataError(f'{name}: SHA-256 differs from {_MANIFEST}: the file is damaged')
            parsed.append(_parse_idx(gzip.decompress(compressed), name))
            names.append(name)
        arrays.extend(_split_arrays(parsed[0], parsed[1], names[0], names[1]))
    where = (f'embedded subset {_EMBEDDED_PACKAGE}/{_EMBEDDED_FOLDER} (class-balanced, seed '
             f'{manifest["seed"]})')
    return _dataset(*arrays, source='embedded', where=where, name=_TFDS_NAME)


# ----------------------------------------------------------------------------------------------
# TFDS.


def _tfds_data_dir(data_dir: str) -> str:
    """`data_dir`, or TFDS's default data dir when it is ''."""
    # TFDS's own rule (tfds.core.constants.get_default_data_dir), repeated here so that 'auto'
    # need not import TFDS to find nothing there, and read at call time rather than at TFDS's
    # import so that a changed TFDS_DATA_DIR is honoured.
    default = os.environ.get('TFDS_DATA_DIR', os.path.join('~', 'tensorflow_datasets'))
    return os.path.expanduser(data_dir or default)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split('.'))


def _prepared_problem(path: str) -> str:
    """Why the TFDS dataset folder `path` cannot be read without TensorFlow; '' when it can."""
    info_path = os.path.join(path, 'dataset_info.json')
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return f'no readable {info_path}'
    # TFDS leaves the field out for its default format, TFRecord, which it cannot read without
    # TensorFlow.
    file_format = info.get('fileFormat', 'tfrecord')
    if file_format != 'array_record':
        return (f'{info_path} says {file_format} format, which TFDS reads only with TensorFlow; '
                'prepare it again as array_record')
    if not {'train', 'test'} <= {s.get('name') for s in info.get('splits', [])}:
        return f'{info_path} lacks the train or test split'
    return ''


def _find_prepared_tfds(root: str, name: str = _TFDS_NAME) -> tuple[str | None, str]:
    """Finds the dataset `name` prepared in array_record format under the TFDS data dir `root`.

    Returns:
      `(version, why)`: the newest such version ('3.0.1') or None, and a phrase saying why not.
    """
    folder = os.path.join(root, name)
    try:
        # Only released version folders: TFDS writes into 'incomplete.XXXX_3.0.1' first.
        versions = [v for v in os.listdir(folder) if re.fullmatch(r'\d+\.\d+\.\d+', v)]
    except OSError:
        return None, f'no {folder}'
    why = f'no {folder}/<version>/dataset_info.json'
    for version in sorted(versions, key=_version_key, reverse=True):
        problem = _prepared_problem(os.path.join(folder, version))
        if not problem:
            return version, ''
        why = problem
    return None, why


def _not_prepared_error(root: str, why: str, name: str = _TFDS_NAME) -> DataError:
    if name == _TFDS_NAME:
        return DataError(
            f'TFDS mnist is not prepared in {root} ({why}). Prepare it offline with '
            f'`{_PREPARE_COMMAND.format(root)}`, or with TensorFlow and internet, '
            f'`tfds build mnist --file_format=array_record --data_dir={root}`.')
    return DataError(
        f'TFDS {name} is not prepared in {root} ({why}). Prepare it with TensorFlow and '
        f'internet, `tfds build {name} --file_format=array_record --data_dir={root}`, or load '
        "its files with source 'idx' or 'folder'.")


def _read_tfds_split(ds, where: str, empty_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Reads a TFDS data source's records; `empty_shape` is the image shape if it has none."""
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    # Chunks through `__getitems__`: `ds[i]` one by one costs the same decoding but adds Python
    # overhead per record; data sources do not take slices.
    for start in range(0, len(ds), _TFDS_CHUNK):
        records = ds.__getitems__(range(start, min(start + _TFDS_CHUNK, len(ds))))
        chunk = [np.asarray(r['image']) for r in records]
        first = images[0][0] if images else chunk[0]
        for i, image in enumerate(chunk, start):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape != first.shape:
                raise DataError(f'{where}: record {i} holds a {image.dtype} image of shape '
                                f'{image.shape}, record 0 a {first.dtype} one of shape '
                                f'{first.shape}: expected uint8 [H, W, C], one shape for all')
        images.append(np.stack(chunk))
        labels.append(np.array([r['label'] for r in records], dtype=np.int32))
    if not images:
        if None in empty_shape or len(empty_shape) != 3:
            raise DataError(f'{where}: no records, and the image shape {empty_shape} is not fixed')
        return np.zeros((0, *empty_shape), np.uint8), np.zeros((0,), np.int32)
    return np.concatenate(images), np.concatenate(labels)


def _load_tfds(data_dir: str, name: str = _TFDS_NAME) -> Dataset:
    root = _tfds_data_dir(data_dir)
    version, why = _find_prepared_tfds(root, name)
    if version is None:
        raise _not_prepared_error(root, why, name)
    import tensorflow_datasets as tfds  # Lazy: see the module docstring.

    path = os.path.join(root, name, version)
    try:
        # download=False and try_gcs=False: read what is on disk, never the network.
        sources = tfds.data_source(f'{name}:{version}', split=['train', 'test'], data_dir=root,
                                   download=False, try_gcs=False)
        features = sources[0].dataset_info.features
        if not {'image', 'label'} <= set(features.keys()):
            raise DataError(f'{path}: TFDS {name} has the features {", ".join(features.keys())}; '
                            "the loader needs 'image' and 'label'")
        empty_shape = tuple(features['image'].shape)
        arrays: list[np.ndarray] = []
        for split, ds in zip(('train', 'test'), sources, strict=True):
            arrays.extend(_read_tfds_split(ds, f'{path} {split}', empty_shape))
    except DataError:
        raise
    except Exception as e:  # TFDS raises many kinds (AssertionError, NotImplementedError, ...).
        raise DataError(f'{path}: TFDS cannot read the prepared {name}: {type(e).__name__}: '
                        f'{e}'.replace('\n', ' ')) from e
    if arrays[0].shape[1:] != arrays[2].shape[1:]:
        raise DataError(f'{path}: TFDS {name} train images are {_shape_text(arrays[0].shape[1:])}'
                        f', test images {_shape_text(arrays[2].shape[1:])}: they must share one '
                        'shape')
    return _dataset(*arrays, source='tfds', where=f'TFDS {path}', name=name)


@functools.cache
def _local_mnist_builder():
    """TFDS's MNIST builder, fed from local IDX arrays instead of its download."""
    from PIL import Image
    from tensorflow_datasets.image_classification import mnist as tfds_mnist

    # skip_registration: 'mnist' stays TFDS's own builder, which is what `tfds.data_source`
    # later reads these files with; the name makes the files land where it looks for them.
    class LocalMNIST(tfds_mnist.MNIST, skip_registration=True):
        name = _TFDS_NAME

        def __init__(self, *, mnist: Dataset, **kwargs):
            self._local_mnist = mnist
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            m = self._local_mnist
            return {
                'train': self._generate(m.train_images, m.train_labels),
                'test': self._generate(m.test_images, m.test_labels),
            }

        def _generate(self, images, labels):
            # PIL images, not arrays: TFDS encodes arrays to PNG with TensorFlow, PIL images
            # with Pillow. The key only seeds TFDS's shuffle.
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                yield i, {'image': Image.fromarray(image[:, :, 0]), 'label': int(label)}

    return LocalMNIST


def prepare_tfds(idx_dir: str, data_dir: str) -> str:
    """Builds the TFDS 'mnist' dataset (array_record) from a local IDX folder.

    Needs neither internet nor TensorFlow. Afterwards `load_mnist('tfds', data_dir)` reads it, and
    `load_mnist('auto', data_dir)` picks it. Full MNIST takes about 10 s on 2 cores.

    Args:
      idx_dir: folder with the four standard MNIST IDX files (plain or `.gz`).
      data_dir: TFDS data dir to write into; '' for TFDS's default (`$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`).

    Returns:
      The prepared dataset's folder, `<data_dir>/mnist/<version>`.

    Raises:
      DataError: when the IDX files are missing, malformed or not of 28 x 28 images, or mnist of
        this version already sits in `data_dir` in another format.
    """
    root = _tfds_data_dir(data_dir)
    builder_cls = _local_mnist_builder()
    path = os.path.join(root, _TFDS_NAME, str(builder_cls.VERSION))
    if os.path.exists(path):
        problem = _prepared_problem(path)
        if problem:
            raise DataError(f'{path} already exists ({problem}); delete it or choose another '
                            'data_dir')
        logging.info('TFDS mnist already prepared in %s', path)
        return path
    mnist = _load_idx(idx_dir)
    if mnist.image_shape != (IMAGE_SIDE, IMAGE_SIDE, 1):
        raise DataError(f'{idx_dir}: images are {_shape_text(mnist.image_shape)}, but TFDS mnist '
                        'holds 28x28x1')
    builder = builder_cls(mnist=mnist, data_dir=root, file_format='array_record')
    import tensorflow_datasets as tfds

    start = time.time()
    # Downloads go to a throw-away folder (there are none; TFDS would leave an empty one), and
    # try_download_gcs=False stops TFDS fetching a prepared copy from Google Cloud Storage.
    with tempfile.TemporaryDirectory() as downloads:
        builder.download_and_prepare(
            download_dir=downloads,
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    path = os.fspath(builder.data_dir)
    logging.info('Prepared TFDS mnist in %s from %s in %.1f s', path, idx_dir, time.time() - start)
    return path


# ----------------------------------------------------------------------------------------------
# The entry points and the command line.


def load_data(source: str = 'auto', data_dir: str = '', name: str = _TFDS_NAME) -> Dataset:
    """Loads the labelled image dataset `name` from one source.

    Args:
      source: one of `SOURCES`: 'tfds', 'idx', 'folder', 'embedded' (MNIST only), or 'auto'
        ('tfds' when `name` is prepared in `data_dir`, else 'embedded' for MNIST and an error for
        other names; it never touches the network).
      data_dir: for 'tfds' and 'auto', the TFDS data dir ('' for TFDS's default); for 'idx', the
        folder of IDX files; for 'folder', the folder holding `train/` and `test/`; ignored by
        'embedded'.
      name: the dataset: for 'tfds' and 'auto' its TFDS name ('mnist', 'fashion_mnist', 'kmnist',
        'cifar10', ...); 'idx' and 'folder' use it in descriptions; for 'mnist' every source
        checks that images are 28 x 28 x 1 (and 'idx' that labels are digits).

    Returns:
      `Dataset` with uint8 images `[N, H, W, C]` and int32 labels `[N]` (MNIST's images are
      `[N, 28, 28, 1]`); its `source` says which source served. TFDS's record order is its own
      shuffle of the IDX order.

    Raises:
      DataError: unknown source or malformed name, data missing or not prepared (with the command
        that prepares it), or malformed files or images of different shapes (naming the file).
    """
    if source not in SOURCES:
        raise DataError(f'unknown {_title(name)} source {source!r}; valid sources: '
                        f'{", ".join(SOURCES)}')
    if not re.fullmatch(_NAME_PATTERN, name):
        raise DataError(f'dataset name {name!r}: expected a TFDS-style name such as mnist, '
                        'fashion_mnist or cifar10')
    if source == 'auto':
        root = _tfds_data_dir(data_dir)
        version, why = _find_prepared_tfds(root, name)
        if version is None and name != _TFDS_NAME:
            raise _not_prepared_error(root, why, name)
        source = 'tfds' if version else 'embedded'
        if version is None:
            logging.info('MNIST source auto: embedded subset, since TFDS mnist is not prepared '
                         'in %s (%s)', root, why)
    if source == 'embedded' and name != _TFDS_NAME:
        raise DataError(f"source 'embedded' ships MNIST only; load {name} with source 'tfds', "
                        "'idx' or 'folder'")
    if source == 'tfds':
        dataset = _load_tfds(data_dir, name)
    elif source == 'idx':
        dataset = _load_idx(data_dir, name)
    elif source == 'folder':
        dataset = _load_folder(data_dir, name)
    else:
        dataset = _load_embedded()
    if name == _TFDS_NAME and dataset.image_shape != (IMAGE_SIDE, IMAGE_SIDE, 1):
        raise DataError(f'{dataset.description}: MNIST images are 28 x 28 x 1, these '
                        f'{_shape_text(dataset.image_shape)}; for another dataset set data.name')
    logging.info('%s', dataset.description)
    return dataset


def two_digit_mnist(images: np.ndarray, labels: np.ndarray, num: int, seed: int,
                    size: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DRAW's two-digit MNIST (Gregor et al. 2015, section 4.2): two digits chosen at random and
    placed at random positions on a black `size` x `size` background; where they overlap the
    intensities are added and clipped to the brightest value (255).

    Args:
      images: uint8 `[N, h, w]` or `[N, h, w, 1]` digits (e.g. one split of MNIST), h, w <= size.
      labels: `[N]` their digits, 0..9.
      num: how many images to make.
      seed: `numpy.random.default_rng(seed)` draws the digits, then the positions: the same
        arguments give the same arrays.
      size: the side of the images made.

    Returns:
      `(images uint8 [num, size, size], labels uint8 [num], positions int [num, 2, 2])`: the
      label is 10 x the left digit + the right one (left: the smaller column of the top-left
      corner, the first drawn on a tie), so 0..99 and a judge of 100 classes scores both digits;
      `positions[i, j]` is digit j's top-left (row, column), j = 0 the left one.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[0] != len(labels) or images.dtype != np.uint8:
        raise ValueError(f'two_digit_mnist: images must be uint8 [N, h, w] beside N labels, got '
                         f'{images.dtype} {list(images.shape)} and {len(labels)} labels')
    n, h, w = images.shape
    if h > size or w > size:
        raise ValueError(f'two_digit_mnist: {h} x {w} digits do not fit a {size} x {size} image')
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, (num, 2))
    corners = np.stack([rng.integers(0, size - h + 1, (num, 2)),
                        rng.integers(0, size - w + 1, (num, 2))], axis=-1)  # [num, 2, (row, col)]
    order = np.argsort(corners[:, :, 1], axis=1, kind='stable')  # left digit first
    picks = np.take_along_axis(picks, order, axis=1)
    corners = np.take_along_axis(corners, order[..., None], axis=1)
    out = np.zeros((num, size, size), np.uint16)
    for i in range(num):
        for j in range(2):
            r, c = corners[i, j]
            out[i, r:r + h, c:c + w] += images[picks[i, j]]
    digits = np.asarray(labels, np.int64)[picks]
    return (np.minimum(out, 255).astype(np.uint8), (10 * digits[:, 0] + digits[:, 1]).astype(
        np.uint8), corners)


def load_mnist(source: str = 'auto', data_dir: str = '') -> Dataset:
    """Loads MNIST from one source: `load_data(source, data_dir, 'mnist')`.

    Returns:
      `Dataset` with uint8 images `[N, 28, 28, 1]` (images of another shape are refused) and
      int32 labels `[N]`.
    """
    return load_data(source, data_dir, _TFDS_NAME)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bigran_jax.data --idx_dir=DIR --data_dir=DIR`: prepares TFDS mnist offline."""
    # argparse rather than absl flags: flags stay local to this command, and importing the module
    # defines none.
    parser = argparse.ArgumentParser(
        prog='python -m bigran_jax.data',
        description='Prepare the TFDS mnist dataset (array_record) from a local folder of the '
                    'four MNIST IDX files, without internet or TensorFlow.')
    parser.add_argument('--idx_dir', required=True,
                        help='folder with train-images-idx3-ubyte[.gz] and the other three files')
    parser.add_argument('--data_dir', default='',
                        help="TFDS data dir to write into ('' for TFDS's default)")
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.INFO)
    try:
        path = prepare_tfds(args.idx_dir, args.data_dir)
    except DataError as e:
        parser.exit(1, f'error: {e}\n')
    print(path)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
