"""MNIST and Fashion-MNIST from the standard IDX files, read from a folder or downloaded once.

Downloads are streamed to a temporary file, checked against the published SHA-256 and moved into
place atomically; nothing is fetched unless asked for (download=True). No torchvision needed.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..utils.files import atomic_write
from .images import SPLITS, ImageSet, pad_images, to_unit_range

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049    # IDX magic: 0x0803 = uint8 in 3 dims, 0x0801 = in 1 dim

# Mirrors, and the SHA-256 of each published .gz archive exactly as the mirrors serve it.
# MNIST: LeCun, Cortes & Burges 1998; Fashion-MNIST: Xiao, Rasul & Vollgraf 2017 (whose README
# publishes MD5s 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd... of the same four archives).
SOURCES = {
    "mnist": {
        "mirrors": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        "sha256": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion-mnist": {
        "mirrors": ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        "sha256": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    },
}


def data_home(name: str) -> Path:
    """The cache folder of a data set: $DIFFUSION_LIB_DATA/<name>, else ~/.cache/diffusion_lib/<name>."""
    base = os.environ.get("DIFFUSION_LIB_DATA")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "diffusion_lib") / name


def download_file(url: str, dest, sha256: str, progress: bool = True) -> Path:
    """Fetch `url` to `dest`, verified: streamed to a temporary file beside dest, its length
    checked against the server's and its SHA-256 against `sha256`, then moved into place with
    os.replace, so dest is either absent or complete and verified. http(s):// and file:// URLs.

    A short or wrong download raises ValueError and leaves no file behind; an unreachable
    server raises OSError (urllib.error.URLError).
    """
    def fetch(out) -> None:
        with urllib.request.urlopen(url, timeout=30) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            digest, received = hashlib.sha256(), 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=Path(dest).name, leave=False,
                      disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise ValueError(f"the download of {url} is truncated: {received} of {total} bytes "
                             f"arrived; nothing was kept, try again")
        if digest.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch for {url}: SHA-256 {digest.hexdigest()}, expected "
                             f"{sha256}; the file was not kept (a damaged download or a wrong mirror)")

    atomic_write(dest, fetch, suffix=".part")
    return Path(dest)


def _download(name: str, archives, folder: Path, base_url: str | None, progress: bool) -> None:
    """Fetch each named .gz archive of data set `name` into `folder`, trying mirror after mirror."""
    mirrors = (base_url.rstrip("/") + "/",) if base_url else SOURCES[name]["mirrors"]
    for archive in archives:
        errors = []
        for mirror in mirrors:
            try:
                download_file(mirror + archive, folder / archive, SOURCES[name]["sha256"][archive], progress)
                break
            except OSError as e:                               # unreachable, 404, timeout
                errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
        else:
            raise ConnectionError(f"could not download {archive} ({'; '.join(errors)}). Without a "
                                  f"network, put the IDX files in a folder and pass root= that folder")


def read_idx(path, magic: int, item_shape: tuple) -> np.ndarray:
    """One IDX file (raw or gzip-compressed) as a uint8 array of shape (N, *item_shape).

    IDX format (LeCun et al. 1998): big-endian uint32 magic (2051 images, 2049 labels), one
    uint32 per dimension, then the bytes. The magic, the dimensions and the exact file length are
    checked; a corrupt or truncated file raises ValueError naming the file and the fault.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":                                 # the gzip signature
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path} is a damaged or truncated gzip file ({e}); delete it and "
                             f"fetch it again") from None
    header = 4 + 4 * (1 + len(item_shape))
    if len(raw) < header:
        raise ValueError(f"{path} has {len(raw)} bytes, too few for an IDX header ({header} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path} has IDX magic number {found}, expected {magic} "
                         f"({'images' if magic == IMAGES_MAGIC else 'labels'}); is it the right file?")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=1 + len(item_shape), offset=4))
    if dims[1:] != tuple(item_shape):
        raise ValueError(f"{path} holds items of shape {dims[1:]}, expected {tuple(item_shape)}")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(f"{path} has {len(raw)} bytes but its header (dimensions {dims}) needs "
                         f"exactly {expected}: the file is truncated or damaged")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, base: str) -> Path | None:
    return next((folder / n for n in (base, base + ".gz") if (folder / n).is_file()), None)


def load_mnist(name: str = "mnist", split: str = "train", root=None, download: bool = False,
               pad_to: int | None = None, base_url: str | None = None, progress: bool = True) -> ImageSet:
    """MNIST or Fashion-MNIST from the standard IDX files: 28x28, 256 grey levels, labels 0..9.

    split: "train" (60,000), "test" (10,000) or "all" (both).  Files are read from `root`, or
    from the cache folder data_home(name) (~/.cache/diffusion_lib/<name>, or $DIFFUSION_LIB_DATA/
    <name>) when root is None; each may be raw or gzip-compressed.  download=True fetches the
    missing archives once into that folder (from `base_url` when given, else the mirrors) and
    checks their SHA-256. Files already there are only IDX-checked: re-compressed copies hold
    the same images but differ from the published archives.
    Offline with only the test files, train demos on split="test".
    pad_to=32 pads with -1 to 32x32.  Images (N, 1, H, W) float32 in [-1, 1], labels int64.
    """
    if name not in SOURCES:
        raise ValueError(f"name must be one of {tuple(SOURCES)}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    parts = ("train", "test") if split == "all" else (split,)
    folder = Path(root).expanduser() if root is not None else data_home(name)
    needed = [base for part in parts for base in IDX_FILES[part]]
    if download:
        _download(name, [b + ".gz" for b in needed if _find_idx(folder, b) is None], folder, base_url, progress)
    missing = [b for b in needed if _find_idx(folder, b) is None]
    if missing:
        raise FileNotFoundError(
            f"{name} split {split!r} needs {', '.join(missing)} (raw or .gz) in {folder}, which is "
            f"missing them. Fetch them once with load_dataset({name!r}, split={split!r}, "
            f"download=True) (SHA-256 checked, cached in {data_home(name)}; DIFFUSION_LIB_DATA "
            f"moves the cache), or pass root= a folder that holds them. Offline with only the "
            f"t10k files, use split='test' (10,000 images) for demos.")
    images, labels = [], []
    for part in parts:
        x = read_idx(_find_idx(folder, IDX_FILES[part][0]), IMAGES_MAGIC, (28, 28))
        y = read_idx(_find_idx(folder, IDX_FILES[part][1]), LABELS_MAGIC, ())
        if len(x) != len(y) or (len(y) and int(y.max()) > 9):
            raise ValueError(f"{folder}: {part} has {len(x)} images and {len(y)} labels (labels "
                             f"up to {int(y.max()) if len(y) else None}); expected equal counts, labels 0..9")
        images.append(x)
        labels.append(y)
    x = to_unit_range(np.concatenate(images), 256).unsqueeze(1)     # (N, 1, 28, 28)
    x = pad_images(x, pad_to) if pad_to else x
    return ImageSet(name, split, x, torch.from_numpy(np.concatenate(labels).astype(np.int64)), levels=256)
