"""Data loading: IDX parsing, the once-only verified download, the real MNIST test set.

Every check here is exact (byte counts, checksums, shapes, label counts, error messages) and
deterministic: false-failure rate 0 per test and for the module. Nothing is downloaded from the
internet: downloads come from a local http.server on 127.0.0.1 (in a thread) or file:// URLs,
serving small IDX files the tests write. The real MNIST test set is read from
../shared/data/mnist when that folder exists (those tests skip otherwise).
"""
import gzip
import hashlib
import http.server
import re
import socket
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lib.data import mnist
from diffusion_lib.data import load_dataset
from diffusion_lib.data.mnist import load_mnist, read_idx

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                 reason=f"the real MNIST test set is not at {MNIST_DIR}")


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file as bytes: big-endian magic, one uint32 per dimension, then uint8 data."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def small_split(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)


def write_split(folder: Path, part: str = "test", n: int = 12, compress: bool = True, seed: int = 0):
    """Write images and labels of one split as IDX (gzip by default); return the arrays."""
    images, labels = small_split(n, seed)
    names = mnist.IDX_FILES[part]
    for name, array, magic in ((names[0], images, 2051), (names[1], labels, 2049)):
        raw = idx_bytes(array, magic)
        path = folder / (name + ".gz" if compress else name)
        path.write_bytes(gzip.compress(raw) if compress else raw)
    return images, labels


# --- IDX parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_small_idx_files_load_exactly(tmp_path, compress):
    images, labels = write_split(tmp_path, compress=compress)
    ds = load_mnist("mnist", "test", root=tmp_path)
    assert ds.images.shape == (12, 1, 28, 28) and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64 and ds.levels == 256 and ds.name == "mnist"
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
    expected = torch.from_numpy(images.astype(np.float32)) * (2 / 255) - 1     # 2 k / 255 - 1
    assert torch.allclose(ds.images[:, 0], expected, atol=1e-6, rtol=0)


def test_pad_to_32_adds_two_black_pixels_per_side(tmp_path):
    write_split(tmp_path)
    plain = load_mnist("mnist", "test", root=tmp_path)
    padded = load_mnist("mnist", "test", root=tmp_path, pad_to=32)
    assert padded.images.shape == (12, 1, 32, 32)
    assert torch.equal(padded.images[..., 2:30, 2:30], plain.images)
    border = padded.images.clone()
    border[..., 2:30, 2:30] = -1
    assert bool((border == -1).all())
    with pytest.raises(ValueError, match="smaller than the images"):
        load_mnist("mnist", "test", root=tmp_path, pad_to=20)


def test_split_all_concatenates_train_and_test(tmp_path):
    tr_images, _ = write_split(tmp_path, "train", n=5, seed=1)
    te_images, _ = write_split(tmp_path, "test", n=3, seed=2)
    ds = load_mnist("fashion-mnist", "all", root=tmp_path)
    assert len(ds) == 8 and ds.name == "fashion-mnist"
    assert torch.equal(ds.images[5:, 0], torch.from_numpy(te_images.astype(np.float32)) * (2 / 255) - 1)


def corrupt(raw: bytes, how: str) -> bytes:
    if how == "magic":
        return (2049).to_bytes(4, "big") + raw[4:]
    if how == "truncated":
        return raw[:-100]
    if how == "trailing":
        return raw + b"\x00" * 7
    if how == "dims":
        return raw[:8] + (27).to_bytes(4, "big") + raw[12:]
    if how == "header":
        return raw[:10]
    raise AssertionError(how)


@pytest.mark.parametrize("how, message", [
    ("magic", "magic number 2049, expected 2051"), ("truncated", "truncated or damaged"),
    ("trailing", "truncated or damaged"), ("dims", r"shape \(27, 28\), expected \(28, 28\)"),
    ("header", "too few for an IDX header")])
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_corrupt_idx_is_refused_naming_the_file(tmp_path, how, message, compress):
    images, _ = small_split(4)
    raw = corrupt(idx_bytes(images, 2051), how)
    path = tmp_path / ("bad.gz" if compress else "bad")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(ValueError, match=message) as err:
        read_idx(path, 2051, (28, 28))
    assert str(path) in str(err.value)


def test_truncated_gzip_is_refused(tmp_path):
    images, _ = small_split(4)
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(images, 2051))[:-40])
    with pytest.raises(ValueError, match="damaged or truncated gzip") as err:
        read_idx(path, 2051, (28, 28))
    assert str(path) in str(err.value)


def test_mismatched_counts_and_bad_labels_are_refused(tmp_path):
    write_split(tmp_path, n=6)
    names = mnist.IDX_FILES["test"]
    (tmp_path / (names[1] + ".gz")).write_bytes(gzip.compress(idx_bytes(np.arange(5) % 10, 2049)))
    with pytest.raises(ValueError, match="6 images and 5 labels"):
        load_mnist("mnist", "test", root=tmp_path)
    (tmp_path / (names[1] + ".gz")).write_bytes(gzip.compress(idx_bytes(np.full(6, 11), 2049)))
    with pytest.raises(ValueError, match="labels 0..9"):
        load_mnist("mnist", "test", root=tmp_path)


def test_missing_train_files_explain_how_to_get_them(tmp_path):
    write_split(tmp_path, "test")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", split="train", root=tmp_path)
    message = str(err.value)
    for needed in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "download=True",
                   "root=", "split='test'", str(tmp_path)):
        assert needed in message, needed


def test_a_cache_with_only_the_test_split_explains_the_missing_train_split(tmp_path, monkeypatch):
    # Offline with only the t10k files (as in ../shared/data/mnist), in the default cache folder:
    # split="test" loads from there without root=, split="train" names the missing files, the
    # folder it looked in and how to get them.
    monkeypatch.setenv("DIFFUSION_LIB_DATA", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    images, _ = write_split(tmp_path / "mnist", "test")
    test = load_dataset("mnist", split="test")
    assert torch.equal(test.images[:, 0], torch.from_numpy(images.astype(np.float32)) * (2 / 255) - 1)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", split="train")
    message = str(err.value)
    missing = message.split(" needs ")[1].split(" (raw or .gz)")[0]
    assert missing == "train-images-idx3-ubyte, train-labels-idx1-ubyte", message
    for needed in (str(tmp_path / "mnist"), "download=True", "split='test'"):
        assert needed in message, needed


def test_load_dataset_dispatch_and_unknown_names():
    assert load_dataset("digits", "test").images.shape == (299, 1, 8, 8)
    assert load_dataset("digits", "all", pad_to=12).images.shape == (1797, 1, 12, 12)
    with pytest.raises(ValueError, match="digits, mnist, fashion-mnist"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("mnist", split="validation")


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFUSION_LIB_DATA", str(tmp_path))
    assert mnist.data_home("mnist") == tmp_path / "mnist"
    monkeypatch.delenv("DIFFUSION_LIB_DATA")
    assert mnist.data_home("mnist") == Path.home() / ".cache" / "diffusion_lib" / "mnist"


# --- the download, served locally ----------------------------------------------------------------

class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; records each request; under /short/ it announces the full length but
    sends only half of the file, then hangs up (a broken connection)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if not self.path.startswith("/short/"):
            return super().do_GET()
        body = (Path(self.directory) / self.path[len("/short/"):]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local http.server over tmp_path/served, holding the gzip test split; the published
    MNIST checksums of those two archives are replaced by the served files' own."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    write_split(served, "test")
    for name in mnist.IDX_FILES["test"]:
        sha = hashlib.sha256((served / (name + ".gz")).read_bytes()).hexdigest()
        monkeypatch.setitem(mnist.SOURCES["mnist"]["sha256"], name + ".gz", sha)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(served)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()
    httpd.server_close()


def test_download_once_then_read_from_the_cache(server, tmp_path):
    httpd, url, served = server
    cache = tmp_path / "cache"
    first = load_mnist("mnist", "test", root=cache, download=True, base_url=url, progress=False)
    assert sorted(httpd.requests) == ["/t10k-images-idx3-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"]
    assert sorted(p.name for p in cache.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    second = load_mnist("mnist", "test", root=cache, download=True, base_url=url, progress=False)
    assert len(httpd.requests) == 2, "the second call must not download again"
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    from_source = load_mnist("mnist", "test", root=served)
    assert torch.equal(first.images, from_source.images)


def test_download_goes_to_the_cache_folder_by_default(server, tmp_path, monkeypatch):
    _, url, _ = server
    monkeypatch.setenv("DIFFUSION_LIB_DATA", str(tmp_path / "home"))
    load_mnist("mnist", "test", download=True, base_url=url, progress=False)
    assert (tmp_path / "home" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_wrong_checksum_is_refused_and_nothing_is_kept(server, tmp_path, monkeypatch):
    _, url, _ = server
    monkeypatch.setitem(mnist.SOURCES["mnist"]["sha256"], "t10k-images-idx3-ubyte.gz", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="checksum mismatch.*t10k-images-idx3-ubyte.gz"):
        load_mnist("mnist", "test", root=cache, download=True, base_url=url, progress=False)
    assert list(cache.iterdir()) == []


def test_truncated_download_is_refused_and_nothing_is_kept(server, tmp_path):
    _, url, served = server
    cache = tmp_path / "cache"
    name = "t10k-images-idx3-ubyte.gz"
    sha = mnist.SOURCES["mnist"]["sha256"][name]
    with pytest.raises(ValueError, match="truncated"):
        mnist.download_file(url + "short/" + name, cache / name, sha, progress=False)
    assert list(cache.iterdir()) == []


def test_file_urls_work_and_are_verified(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_split(served, "test")
    name = "t10k-labels-idx1-ubyte.gz"
    sha = hashlib.sha256((served / name).read_bytes()).hexdigest()
    dest = mnist.download_file((served / name).as_uri(), tmp_path / "out" / name, sha, progress=False)
    assert dest.read_bytes() == (served / name).read_bytes()
    with pytest.raises(ValueError, match="checksum mismatch"):
        mnist.download_file((served / name).as_uri(), tmp_path / "out2" / name, "f" * 64, progress=False)
    assert list((tmp_path / "out2").iterdir()) == []


def test_unreachable_server_gives_a_clear_error(tmp_path):
    with socket.socket() as s:                      # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match="could not download t10k-images-idx3-ubyte.gz.*root="):
        load_mnist("mnist", "test", root=tmp_path, download=True,
                   base_url=f"http://127.0.0.1:{port}/", progress=False)


def test_published_checksums_are_sha256_hex_digests_one_per_archive():
    # The download compares hashlib's hexdigest() with the table as strings: an entry that is not 64
    # lower-case hex digits (upper case, a truncated paste, an MD5) would refuse every genuine file.
    every = []
    for name, source in mnist.SOURCES.items():
        assert sorted(source["sha256"]) == sorted(n + ".gz" for part in ("train", "test")
                                                  for n in mnist.IDX_FILES[part]), name
        for archive, h in source["sha256"].items():
            assert re.fullmatch(r"[0-9a-f]{64}", h), (name, archive, h)
        every += source["sha256"].values()
    assert len(set(every)) == len(every), "two archives share a checksum: a copy-paste slip"


@pytest.mark.parametrize("name", sorted(mnist.SOURCES))
@pytest.mark.parametrize("part", ["train", "test"])
def test_each_download_is_checked_against_its_published_checksum(tmp_path, name, part):
    # Served: our small IDX archives, whose SHA-256 we compute here. They are not the published
    # files, so the download of each must be refused, with the error naming the digest it computed
    # and the published one it compared it with; nothing may be kept. Given our digest instead of the
    # published one, the same download must succeed (the check compares the right two things).
    served = tmp_path / "served"
    served.mkdir()
    write_split(served, part)
    first = mnist.IDX_FILES[part][0] + ".gz"
    ours = hashlib.sha256((served / first).read_bytes()).hexdigest()
    published = mnist.SOURCES[name]["sha256"][first]
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=f"checksum mismatch.*{first}: SHA-256 {ours}, expected {published}"):
        load_mnist(name, part, root=cache, download=True, base_url=served.as_uri(), progress=False)
    assert not cache.exists() or list(cache.iterdir()) == []
    mnist.download_file((served / first).as_uri(), cache / first, ours, progress=False)
    assert hashlib.sha256((cache / first).read_bytes()).hexdigest() == ours


# --- the real MNIST test set ---------------------------------------------------------------------

@needs_mnist
def test_real_mnist_test_set_matches_its_readme():
    ds = load_dataset("mnist", split="test", root=MNIST_DIR)
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == torch.float32
    assert float(ds.images.min()) == -1.0 and float(ds.images.max()) == 1.0
    levels = (ds.images + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4), "pixels must lie on the 256-level grid"
    unit = ((ds.images.double() + 1) / 2)
    assert abs(float(unit.mean()) - 0.1325) <= 5e-5           # README: 4 decimals
    assert abs(float(unit.std()) - 0.3105) <= 5e-5
    assert torch.bincount(ds.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
