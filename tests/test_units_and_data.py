import gzip
import pickle

import numpy as np
import pytest

from nas.data import datasets
from nas.data import DatasetError, load_data
from nas.units import parse_duration_s, parse_latency_ms


@pytest.mark.parametrize("text, ms", [("1ms", 1.0), ("1 ms", 1.0), ("0.8ms", 0.8), ("800us", 0.8), ("2s", 2000)])
def test_budgets(text, ms):
    assert parse_latency_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text, message", [("fast", "is not a positive number"), ("-1ms", "is not a positive number"),
                                           ("0", "has no unit"), ("1kg", "has unit 'kg'"), ("0ms", "must be positive")])
def test_bad_budgets(text, message):
    with pytest.raises(ValueError, match=message):
        parse_latency_ms(text)


def test_durations():
    assert parse_duration_s("30m") == 1800 and parse_duration_s("2h") == 7200 and parse_duration_s("45") == 45
    with pytest.raises(ValueError, match="duration 'soon'"):
        parse_duration_s("soon")


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_fashion_mnist_from_nas_data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in zip(datasets.FASHION_MNIST_FILES, [(20, 28, 28), (20,), (8, 28, 28), (8,)]):
        _write_idx(folder / name, rng.integers(0, 10 if len(shape) == 1 else 255, size=shape))
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path))
    data = load_data("fashion-mnist")
    assert data.train_x.shape == (20, 28, 28, 1) and data.test_y.shape == (8,) and data.num_classes == 10


def test_missing_fashion_mnist_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="Fashion-MNIST not found in .*train-images-idx3-ubyte.gz"):
        load_data("fashion-mnist")


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST.exists(), reason="Debian's dataset-fashion-mnist is absent")
def test_debian_fashion_mnist(monkeypatch):
    monkeypatch.delenv("NAS_DATA_DIR", raising=False)
    data = load_data("fashion-mnist")
    assert data.train_x.shape == (60000, 28, 28, 1) and data.test_x.shape == (10000, 28, 28, 1)
    assert np.bincount(data.train_y).tolist() == [6000] * 10


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (tmp_path / name).open("wb") as handle:
            pickle.dump({b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, handle)
    data = load_data(f"cifar10:{tmp_path}")
    assert data.train_x.shape == (20, 32, 32, 3) and data.test_x.shape == (4, 32, 32, 3) and data.num_classes == 10


def test_imagefolder_decodes_once_and_reports_unreadable_images(tiny_imagefolder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    broken = tiny_imagefolder / "train" / "red" / "broken.png"
    broken.write_bytes(b"not an image")
    try:
        data = load_data(f"imagefolder:{tiny_imagefolder}", image_size=16)
        assert data.skipped == 1 and "1 unreadable image(s) skipped" in capsys.readouterr().err
        assert data.train_x.shape == (120, 16, 16, 3) and data.classes == ("blue", "green", "red")
        monkeypatch.setattr(datasets, "_decode", lambda *a: pytest.fail("decoded again despite the cache"))
        again = load_data(f"imagefolder:{tiny_imagefolder}", image_size=16)
        assert np.array_equal(again.train_x, data.train_x) and again.skipped == 1
    finally:
        broken.unlink()


@pytest.mark.parametrize("spec, message", [
    ("imagefolder:/nonexistent/data", "no such directory; expected /nonexistent/data/train/<class>/<image>"),
    ("cifar10:/nonexistent", "expected the python batches"),
    ("mnist", "unknown data spec 'mnist'; accepted: fashion-mnist, cifar10:PATH, imagefolder:PATH"),
])
def test_bad_data_specs(spec, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_data(spec)


def test_imagefolder_without_val_split(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="expected .*/val/<class>/<image> \\(or test/\\)"):
        load_data(f"imagefolder:{tmp_path}")


def test_cifar10_from_an_archive_is_extracted_once(tmp_path, tiny_imagefolder, monkeypatch):
    import tarfile

    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_imagefolder, arcname="cifar10-jpeg")
    data = load_data(f"cifar10:{archive}", image_size=16)
    assert data.train_x.shape == (120, 16, 16, 3) and data.name == "cifar10"
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("extracted again"))
    assert load_data(f"cifar10:{archive}", image_size=16).test_x.shape == (36, 16, 16, 3)


def test_the_data_fingerprint_follows_the_pixels_not_the_path():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8), rng.integers(0, 2, 20)
    data = datasets.ImageData("a", x, y, x[:4], y[:4], ("cat", "dog"))
    same = datasets.ImageData("elsewhere", x.copy(), y.copy(), x[:4].copy(), y[:4].copy(), ("cat", "dog"))
    assert data.fingerprint() == same.fingerprint() and len(data.fingerprint()) == 16
    changed = x.copy()
    changed[3, 2, 1, 0] ^= 1  # one bit of one pixel
    assert datasets.ImageData("a", changed, y, x[:4], y[:4], ("cat", "dog")).fingerprint() != data.fingerprint()
    assert datasets.ImageData("a", x, y, x[:4], y[:4], ("dog", "cat")).fingerprint() != data.fingerprint()


def test_the_code_version_is_the_commit_in_a_checkout_and_the_package_version_elsewhere(tmp_path):
    import re
    from importlib import metadata
    from pathlib import Path

    from nas.provenance import code_version

    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{12}(\+modified)?", code_version())
    assert code_version(tmp_path) == f"swiftnas {metadata.version('swiftnas')}"  # no checkout: the package says
