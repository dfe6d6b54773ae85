"""Image translation: folder formats and their errors, embedded digit tasks, networks, the image
pool, one train step per variant, loss terms on hand-checkable cases, evaluation and `translate`."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganzoo.config import Config, DataConfig
from ganzoo.data.prepare import prepare_data
from ganzoo.data.prepared import Prepared, in_memory, load_prepared, prepared_path
from ganzoo.data.translation import TRANSLATION_BUILDERS, outline, thick_inverted
from ganzoo.errors import ConfigError, DataError
from ganzoo.evaluation.translation import translation_metrics, translation_sheet
from ganzoo.image_pool import ImagePool
from ganzoo.nets.translation import (
    DiscoDiscriminator,
    DiscoGenerator,
    PatchDiscriminator,
    ResnetBlock,
    ResnetGenerator,
    UNetGenerator,
)
from ganzoo.stages import translate as translate_path
from ganzoo.training.loop import data_spec, train_loop
from ganzoo.variants import registry
from tests.helpers import make_prepared

TINY = {"pix2pix": {"ngf": 4, "ndf": 4},
        "cyclegan": {"ngf": 4, "ndf": 4, "n_blocks": 1, "pool_size": 4},
        "discogan": {"ngf": 4, "ndf": 4}}
KIND = {"pix2pix": "paired", "cyclegan": "unpaired", "discogan": "unpaired"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids thread hand-off costs that dominate on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def png(path, size=(12, 12), value=100, mode="L", right=None):
    """Grey (or RGB) image; `right` paints the right half another value (A|B side by side)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((size[1], size[0]) + ((3,) if mode == "RGB" else ()), value, dtype=np.uint8)
    if right is not None:
        a[:, size[0] // 2:] = right
    Image.fromarray(a, mode).save(path)
    return path


def build(source, root=None, **kw):
    """The builder's dataset, decoded into memory (folder builders return Rows that prepare writes in chunks)."""
    return in_memory(TRANSLATION_BUILDERS[source](DataConfig(source=source, root=str(root) if root else None,
                                                             image_size=kw.pop("image_size", 16), **kw)))


# --------------------------------------------------------------------------- paired folders

@pytest.fixture
def pix2pix_root(tmp_path):
    root = tmp_path / "facades"
    for i in range(3):
        png(root / "train" / f"{i}.png", size=(24, 12), value=40, right=200)
    for i in range(2):
        png(root / "val" / f"{i}.jpg", size=(24, 12), value=40, right=200)
    return root


def test_pix2pix_layout_uses_val_without_test(pix2pix_root):
    prep = build("paired_folder", pix2pix_root)
    t = prep.tensors
    assert prep.kind == "paired"
    assert t["a"].shape == (3, 1, 16, 16) and t["a_test"].shape == (2, 1, 16, 16)
    assert (t["a"] == 40).all() and (t["b"] == 200).all()  # left half is A, right half is B
    assert abs(t["b_test"].float().mean() - 200) < 3  # jpeg: close, not exact


def test_pix2pix_layout_prefers_test_and_direction_swaps(pix2pix_root):
    png(pix2pix_root / "test" / "t.png", size=(24, 12), value=10, right=90)
    prep = build("paired_folder", pix2pix_root, direction="BtoA")
    t = prep.tensors
    assert t["a_test"].shape[0] == 1 and (t["a_test"] == 90).all() and (t["b_test"] == 10).all()
    assert (t["a"] == 200).all() and (t["b"] == 40).all()
    assert prep.manifest["direction"] == "BtoA"


def test_ab_layout_with_splits_matches_by_stem(tmp_path):
    root = tmp_path / "ab"
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            png(root / "A" / split / f"{split}{i}.png", value=10 * i)
            png(root / "B" / split / f"{split}{i}.bmp", value=10 * i + 100, mode="RGB")
    prep = build("paired_folder", root)
    t = prep.tensors
    assert t["a"].shape == (3, 3, 16, 16) and t["b_test"].shape == (2, 3, 16, 16)  # one colour image: RGB
    assert torch.equal(t["b"].float() - 100, t["a"].float())  # pairs stay aligned


def test_ab_flat_layout_holds_out_every_fifth(tmp_path):
    root = tmp_path / "flat"
    for i in range(10):
        png(root / "A" / f"{i:02d}.png", value=i)
        png(root / "B" / f"{i:02d}.png", value=i + 50)
    t = build("paired_folder", root).tensors
    assert t["a"].shape[0] == 8 and t["a_test"].shape[0] == 2
    assert t["a_test"][:, 0, 0, 0].tolist() == [0, 5]
    assert torch.equal(t["b"].int() - 50, t["a"].int())


def test_limit_keeps_first_training_pairs(pix2pix_root):
    assert build("paired_folder", pix2pix_root, limit=2).tensors["a"].shape[0] == 2


@pytest.mark.parametrize("case, match", [
    ("no_layout", r"missing split folder .*train"),
    ("no_test", r"missing split folder .*test/ \(or val/\)"),
    ("odd_width", r"bad\.png is 25 pixels wide, odd"),
    ("unreadable", r"cannot read image .*broken\.png"),
    ("unmatched", r"lonely\.png has no partner"),
    ("sizes", r"is 12x12 but its pair .* is 14x12"),
    ("only_a", r"missing split folder .*B/"),
    ("no_root", r"needs data.root"),
])
def test_paired_folder_errors(tmp_path, case, match):
    root = tmp_path / "data"
    root.mkdir()
    if case == "no_test":
        png(root / "train" / "0.png", size=(24, 12))
    elif case == "odd_width":
        png(root / "train" / "ok.png", size=(24, 12))
        png(root / "train" / "bad.png", size=(25, 12))
        png(root / "val" / "0.png", size=(24, 12))
    elif case == "unreadable":
        png(root / "train" / "ok.png", size=(24, 12))
        (root / "train" / "broken.png").write_bytes(b"not a png at all")
        png(root / "val" / "0.png", size=(24, 12))
    elif case in ("unmatched", "sizes"):
        png(root / "A" / "x.png")
        png(root / "B" / "x.png", size=(14, 12) if case == "sizes" else (12, 12))
        png(root / "A" / "y.png")
        png(root / "B" / "y.png")
        if case == "unmatched":
            png(root / "A" / "lonely.png")
    elif case == "only_a":
        png(root / "A" / "x.png")
    with pytest.raises(DataError, match=match):
        build("paired_folder", None if case == "no_root" else root)


# --------------------------------------------------------------------------- unpaired folders

def test_unpaired_layout(tmp_path):
    root = tmp_path / "h2z"
    for split, n in (("trainA", 4), ("trainB", 3), ("testA", 2), ("testB", 1)):
        for i in range(n):
            png(root / split / f"{i}.png", size=(20, 14), value=30 if split.endswith("A") else 220)
    prep = build("unpaired_folder", root, limit=3)
    t = prep.tensors
    assert prep.kind == "unpaired"
    assert {k: v.shape[0] for k, v in t.items()} == {"a": 3, "b": 3, "a_test": 2, "b_test": 1}
    assert t["a"].shape[1:] == (1, 16, 16) and (t["a"] == 30).all() and (t["b_test"] == 220).all()


def test_unpaired_missing_split(tmp_path):
    root = tmp_path / "h2z"
    for split in ("trainA", "trainB", "testA"):
        png(root / split / "0.png")
    with pytest.raises(DataError, match=r"missing split folder .*testB"):
        build("unpaired_folder", root)


# --------------------------------------------------------------------------- embedded digits

def test_digits_paired_is_outline_to_digit():
    prep = build("digits_paired", image_size=32)
    t = prep.tensors
    n = t["a"].shape[0] + t["a_test"].shape[0]
    assert n == 1797 and t["a_test"].shape[0] == round(0.2 * 1797)
    assert t["a"].shape == t["b"].shape and t["a"].shape[1:] == (1, 32, 32)
    assert torch.equal(outline(t["b"]), t["a"])  # the known mapping, recomputable
    assert set(t["a"].unique().tolist()) == {0, 255}  # outlines are binary
    assert t["y"].shape[0] == t["a"].shape[0] and prep.num_classes == 10


def test_digits_unpaired_has_no_pairs_but_known_mapping():
    prep = build("digits_unpaired", image_size=32)
    t = prep.tensors
    assert {"y_a", "y_b", "y_a_test", "y_b_test"} <= t.keys()
    styled = {bytes(x.numpy()) for x in thick_inverted(t["a"])}
    assert not styled & {bytes(x.numpy()) for x in t["b"]}  # A's digits never appear in B
    assert t["b"].float().mean() > 128 > t["a"].float().mean()  # B is dark on white, A light on black
    assert abs(t["a"].shape[0] - t["b"].shape[0]) <= 1


def test_prepare_data_dispatches_translation_sources(tmp_path):
    cfg = DataConfig(source="digits_unpaired", image_size=16, prepared_dir=str(tmp_path))
    prepare_data(cfg, batch_size=8)
    loaded = load_prepared(prepared_path(cfg))
    assert loaded.kind == "unpaired" and loaded.tensors["b"].shape[1:] == (1, 16, 16)
    assert loaded.manifest["source"] == "digits_unpaired"


# --------------------------------------------------------------------------- networks

def test_network_shapes_at_32():
    x = torch.randn(2, 1, 32, 32)
    assert UNetGenerator(1, 3, 32, ngf=4)(x).shape == (2, 3, 32, 32)
    assert ResnetGenerator(1, 3, ngf=4, n_blocks=2)(x).shape == (2, 3, 32, 32)
    assert DiscoGenerator(1, 3, 32, ngf=4)(x).shape == (2, 3, 32, 32)
    assert DiscoDiscriminator(1, 32, ndf=4)(x).shape == (2,)
    patch = PatchDiscriminator(1, 32, ndf=4, n_layers=3)(x)
    assert patch.dim() == 4 and patch.shape[-1] >= 2  # still a map of patches, not one logit
    assert PatchDiscriminator(1, 16, ndf=4, n_layers=3).n_layers == 2  # reduced to fit 16 px
    unet = UNetGenerator(1, 1, 32, ngf=4)
    assert sum(isinstance(m, nn.Dropout) for m in unet.modules()) == 3


# --------------------------------------------------------------------------- the papers' nets at 256

# Parameter counts the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix) prints for
# its defaults at 256 px, RGB -> RGB, ngf = ndf = 64: unet_256 54.414 M, resnet_9blocks 11.378 M,
# basic PatchGAN 2.769 M (pix2pix: 6 input channels, batch norm) / 2.765 M (CycleGAN: 3, instance
# norm). The exact numbers below are those totals recomputed from the reference's layer lists.
REF_UNET_256, REF_RESNET_9, REF_PATCH_PIX2PIX, REF_PATCH_CYCLEGAN = 54_413_955, 11_378_179, 2_768_705, 2_764_737


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _shapes_on_meta(net: nn.Module, x: torch.Tensor, kind: type) -> tuple[torch.Size, list[torch.Size]]:
    """Output shape and the output shapes of every `kind` submodule, on the meta device (no compute)."""
    seen: list[torch.Size] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.shape))
             for m in net.modules() if isinstance(m, kind)]
    out = net(x)
    for h in hooks:
        h.remove()
    return out.shape, seen


def test_pix2pix_unet_at_256_has_eight_levels_and_the_reference_size():
    with torch.device("meta"):
        g = UNetGenerator(3, 3, 256, ngf=64, norm="batch", dropout=0.5)
        out, downs = _shapes_on_meta(g, torch.empty(1, 3, 256, 256), nn.Conv2d)
    assert out == (1, 3, 256, 256)
    # Eight stride-2 convs, 256 -> 1: C64-C128-C256-C512-C512-C512-C512-C512 (pix2pix appendix 6.1.1).
    assert [(s[1], s[2]) for s in downs] == [(64, 128), (128, 64), (256, 32), (512, 16), (512, 8), (512, 4),
                                             (512, 2), (512, 1)]
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == 3  # CD512 x 3 next to the bottleneck
    # ganzoo keeps a bias on the 1x1 bottleneck conv, which no norm follows (the reference drops it): +8 ngf.
    assert _params(g) == REF_UNET_256 + 8 * 64


def test_cyclegan_resnet_at_256_has_nine_blocks_and_the_reference_size():
    with torch.device("meta"):
        g = ResnetGenerator(3, 3, ngf=64, n_blocks=9, norm="instance")
        out, blocks = _shapes_on_meta(g, torch.empty(1, 3, 256, 256), ResnetBlock)
    assert out == (1, 3, 256, 256)
    # c7s1-64, d128, d256, R256 x 9 at 64x64, u128, u64, c7s1-3 (CycleGAN appendix 7.2).
    assert blocks == [torch.Size([1, 256, 64, 64])] * 9
    # ganzoo's instance norms are affine (a scale and shift per channel; the reference's are not):
    # two per norm over 64 + 128 + 256 + 9 x 2 x 256 + 128 + 64 channels.
    assert _params(g) == REF_RESNET_9 + 2 * (64 + 128 + 256 + 18 * 256 + 128 + 64)


def test_patchgan_at_256_is_the_70x70_discriminator():
    with torch.device("meta"):
        d_pix = PatchDiscriminator(6, 256, ndf=64, n_layers=3, norm="batch")
        d_cyc = PatchDiscriminator(3, 256, ndf=64, n_layers=3, norm="instance")
        assert d_pix(torch.empty(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # 30x30 patches of 70x70 pixels
    assert _params(d_pix) == REF_PATCH_PIX2PIX
    assert _params(d_cyc) == REF_PATCH_CYCLEGAN + 2 * (128 + 256 + 512)  # affine instance norms again


def test_the_variants_build_the_papers_nets_at_256():
    """Built by the variants from their defaults (on the CPU: ~0.3 GB of weights, no forward pass)."""
    spec = data_spec(make_prepared("unpaired", n=2, size=8))
    spec = spec.model_copy(update={"image_shape": (3, 256, 256), "image_shape_b": (3, 256, 256)})
    cyc = registry.build(Config(variant="cyclegan"), spec, "cpu")
    assert sum(isinstance(m, ResnetBlock) for m in cyc.nets["g_ab"].modules()) == 9  # 6 below 256 px
    assert _params(cyc.nets["d_a"]) == REF_PATCH_CYCLEGAN + 2 * (128 + 256 + 512)
    del cyc
    pix = registry.build(Config(variant="pix2pix"), spec.model_copy(update={"kind": "paired"}), "cpu")
    assert _params(pix.nets["g"]) == REF_UNET_256 + 8 * 64 and _params(pix.nets["d"]) == REF_PATCH_PIX2PIX


# --------------------------------------------------------------------------- image pool

def _ids(t: torch.Tensor) -> list[float]:
    return sorted(t.flatten(1)[:, 0].tolist())


def test_pool_fills_then_swaps_half_and_conserves_images():
    pool = ImagePool(size=6, seed=1)
    for first in (torch.arange(4.0), torch.arange(4.0, 6.0)):  # filling: stored and returned as given
        first = first.view(-1, 1, 1, 1)
        assert torch.equal(pool.query(first), first)
    assert pool.count == 6 and _ids(pool.images) == [0, 1, 2, 3, 4, 5]
    swapped = 0
    for k in range(200):
        x = torch.arange(100.0 + 10 * k, 110.0 + 10 * k).view(10, 1, 1, 1)
        before = _ids(pool.images)
        out = pool.query(x)
        # Every returned image was either given now or stored before, and nothing is lost or copied.
        assert sorted(before + _ids(x)) == sorted(_ids(pool.images) + _ids(out))
        swapped += int((out != x).flatten(1).any(1).sum())
    assert pool.count == 6
    assert 0.4 < swapped / 2000 < 0.6  # swap with probability 1/2


def _sequential_pool(pool_images: list, count: int, size: int, batch: torch.Tensor, gen: torch.Generator,
                     draw_all: bool = False):
    """The paper code's rule, one image at a time (the reference the device pool must match).
    draw_all: the pool's device form, which draws a coin and a slot for every image and uses
    those of the images past the fill."""
    out, n = [], batch.shape[0]
    fill = min(n, size - count)
    swap = where = None
    if draw_all:
        swap = torch.rand(n, generator=gen, device=gen.device)[fill:] > 0.5
        where = torch.randint(size, (n,), generator=gen, device=gen.device)[fill:]
    elif n - fill:
        swap = torch.rand(n - fill, generator=gen, device=gen.device) > 0.5
        where = torch.randint(size, (n - fill,), generator=gen, device=gen.device)
    for i in range(n):
        if i < fill:
            pool_images.append(batch[i])
            out.append(batch[i])
        elif swap[i - fill]:
            k = int(where[i - fill])
            out.append(pool_images[k])
            pool_images[k] = batch[i]
        else:
            out.append(batch[i])
    return torch.stack(out), count + fill


@pytest.mark.parametrize("size, device, device_count", [(1, "cpu", None), (3, "cpu", None), (7, "cpu", None),
                                                        (1, "cpu", True), (3, "cpu", True), (7, "cpu", True),
                                                        pytest.param(3, "cuda", None, marks=pytest.mark.gpu)])
def test_pool_matches_the_one_image_at_a_time_rule(size, device, device_count):
    """Batches larger than the pool make images of one batch swap with each other: the
    vectorised pool must return and keep exactly what the sequential rule does (on CUDA with
    the generator it hands over to: seeded by one draw of the CPU one). The device form (CUDA's,
    or device_count=True) counts on the device and draws for every image."""
    pool = ImagePool(size=size, seed=4, device_count=device_count)
    gen, data = torch.Generator().manual_seed(4), torch.Generator().manual_seed(0)
    draw_all = device == "cuda" or bool(device_count)
    if device == "cuda":
        gen = torch.Generator(device).manual_seed(int(torch.randint(2 ** 62, (1,), generator=gen)))
    ref: list = []
    count = 0
    for _ in range(30):
        x = torch.randn(int(torch.randint(1, 2 * size + 3, (1,), generator=data)), 1, 2, 2, generator=data)
        x = x.to(device)
        expected, count = _sequential_pool(ref, count, size, x, gen, draw_all)
        assert torch.equal(pool.query(x), expected)
        assert pool.count == count and torch.equal(pool.images[:count], torch.stack(ref))


def test_pool_state_round_trip_is_exact():
    pool = ImagePool(size=5, seed=3)
    for _ in range(3):
        pool.query(torch.randn(4, 1, 2, 2))
    clone = ImagePool(size=5, seed=999)
    clone.load_state_dict(pool.state_dict())
    x = torch.randn(4, 1, 2, 2)
    assert torch.equal(pool.query(x), clone.query(x))
    assert torch.equal(pool.images, clone.images)
    assert torch.equal(ImagePool(size=0).query(x), x)  # size 0: no history


# --------------------------------------------------------------------------- variants

def _variant(name, kind=None, size=32, steps=10):
    prep = make_prepared(kind or KIND[name], n=8, size=size)
    cfg = Config(variant=name, model={name: TINY[name]}, train={"steps": steps, "device": "cpu"})
    return registry.build(cfg, data_spec(prep), "cpu"), prep


def _batch(prep, n=4):
    return {k: prep.tensors[k][:n].float() / 127.5 - 1 for k in ("a", "b")}


@pytest.mark.parametrize("name, kind", [("pix2pix", "paired"), ("cyclegan", "unpaired"),
                                        ("discogan", "unpaired"), ("discogan", "paired")])
def test_one_train_step(name, kind):
    torch.manual_seed(0)
    variant, prep = _variant(name, kind)
    assert variant.translates and registry.get_variant(name).data_kind == KIND[name]
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in variant.nets.items()}
    losses = variant.train_step(_batch(prep))
    assert losses and all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in losses.values())
    for k, net in variant.nets.items():  # every network (both Gs, both Ds) was updated
        assert any(not torch.equal(p, q) for p, q in zip(before[k], net.parameters(), strict=True)), k
    x = _batch(prep)["a"]
    assert variant.translate(x, "AtoB").shape == x.shape


def test_pix2pix_refuses_reverse_direction_and_sampling():
    from ganzoo.sampling import generate

    variant, prep = _variant("pix2pix")
    with pytest.raises(ConfigError, match="one mapping.*--direction AtoB"):
        variant.translate(_batch(prep)["b"], "BtoA")
    with pytest.raises(ConfigError, match="needs inputs.*ganzoo translate"):
        generate(variant, 4)
    cyc, prep = _variant("cyclegan")
    assert cyc.translate(_batch(prep)["b"], "BtoA").shape == (4, 1, 32, 32)


def test_cycle_and_identity_terms_hand_checked():
    variant, prep = _variant("cyclegan")
    b = _batch(prep)
    a, bb = b["a"], b["b"]

    class Negate(nn.Module):
        def forward(self, x):
            return -x

    variant.nets["g_ab"], variant.nets["g_ba"] = nn.Identity(), nn.Identity()
    t = variant.generator_terms(a, bb)
    assert t["cycle"] == 0 and t["identity"] == 0
    variant.nets["g_ab"], variant.nets["g_ba"] = Negate(), Negate()
    t = variant.generator_terms(a, bb)
    assert t["cycle"] == 0  # -(-a) = a
    assert torch.allclose(t["identity"], 2 * bb.abs().mean() + 2 * a.abs().mean())  # |-b - b| = 2|b|


def test_cyclegan_lr_constant_then_linear_to_zero():
    variant, prep = _variant("cyclegan", size=16, steps=10)  # decay_start 0.5: 5 constant steps
    opt = variant.optims["g"]
    lrs = []
    for _ in range(10):
        variant.train_step(_batch(prep, 2))
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == [2e-4] * 4
    assert all(x > y for x, y in zip(lrs[4:], lrs[5:], strict=False)) and lrs[-1] < 2e-4 * 0.2
    assert variant.optims["d"].param_groups[0]["lr"] == lrs[-1]


def test_cyclegan_resume_is_exact(in_tmp):
    """Pools and their generators go through the checkpoint: 2 + 2 steps == 4 steps. (The LR
    decay is off: its schedule follows train.steps, which the two runs set differently.)"""
    prep = make_prepared("unpaired", n=8, size=16)

    def cfg(out):
        return Config(variant="cyclegan", model={"cyclegan": {**TINY["cyclegan"], "decay_start": 1.0}},
                      train={"steps": 4, "batch_size": 3, "device": "cpu", "progress": False,
                             "checkpoint_every": 2, "out_dir": out})

    full = train_loop(cfg("full"), prep)
    c = cfg("split")
    train_loop(c.model_copy(update={"train": c.train.model_copy(update={"steps": 2})}), prep)
    resumed = train_loop(c, prep, resume="yes")
    assert resumed.resumed_from == 2
    s1 = torch.load(full.checkpoint, weights_only=True)["state"]
    s2 = torch.load(resumed.checkpoint, weights_only=True)["state"]
    for net in s1["nets"]:
        for k, v in s1["nets"][net].items():
            assert torch.equal(v, s2["nets"][net][k]), (net, k)
    assert torch.equal(s1["extra"]["pool_b"]["images"], s2["extra"]["pool_b"]["images"])


# --------------------------------------------------------------------------- evaluation

class _Copy:
    """A 'variant' that returns its input: perfect on data where B == A."""

    nets: dict = {}
    directions = ("AtoB", "BtoA")
    device = torch.device("cpu")

    def eval(self):
        return self

    def sampling(self):
        return contextlib.nullcontext(self)

    def translate(self, x, direction="AtoB"):
        return x


class _Brightness(nn.Module):
    """Classifier for images whose brightness encodes the class (class k = value 20k)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def features(self, x):
        return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], 1)

    def forward(self, x):
        value = (x.mean((1, 2, 3)) + 1) * 127.5
        return -(value[:, None] - 20 * torch.arange(10.0)).abs()


def _class_prep(kind):
    y = torch.arange(20) % 10
    img = (20 * y).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 16, 16).contiguous()
    img[:, :, :8] += 5  # some texture so SSIM/FID see variance
    if kind == "paired":
        t = {"a": img, "b": img, "a_test": img, "b_test": img, "y": y, "y_test": y}
    else:
        t = {"a": img, "b": img, "a_test": img, "b_test": img, "y_a_test": y, "y_b_test": y}
    return Prepared(kind, t, {"classes": [str(i) for i in range(10)]})


def test_metrics_of_a_perfect_translator():
    m = translation_metrics(_Copy(), _class_prep("paired"), classifier=_Brightness())
    assert m["l1"] == 0 and m["ssim"] == pytest.approx(1.0, abs=1e-3) and m["psnr"] > 60
    assert m["cycle_error_a"] == 0 and m["cycle_error_b"] == 0
    assert m["class_preservation"] == 1.0 and m["fid_classifier"] == pytest.approx(0.0, abs=1e-3)


def test_metrics_of_a_class_destroying_translator():
    class Dark(_Copy):
        def translate(self, x, direction="AtoB"):
            return torch.full_like(x, -1.0)  # every output looks like class 0

    m = translation_metrics(Dark(), _class_prep("unpaired"), classifier=_Brightness())
    assert "l1" not in m  # unpaired: no targets to compare with
    assert m["class_preservation"] == pytest.approx(0.1)
    assert m["cycle_error_a"] > 0.3 and m["fid_classifier"] > 0.5


@pytest.mark.parametrize("name", ["pix2pix", "cyclegan"])
def test_translation_sheet_layout(tmp_path, name):
    variant, prep = _variant(name, size=16)
    path = translation_sheet(variant, prep, tmp_path / "sheet.png", n=3)
    cols = 3 if name == "pix2pix" else 6
    with Image.open(path) as im:
        assert im.size == (cols * 18 + 2, 3 * 18 + 2)  # 16 px tiles, 2 px padding
    assert variant.nets["g"].training if name == "pix2pix" else variant.nets["g_ab"].training


# --------------------------------------------------------------------------- translate command

@pytest.fixture
def trained(in_tmp):
    """Train a variant 2 steps on tiny random data; returns its checkpoint path."""
    def run(name, kind=None):
        cfg = Config(variant=name, model={name: TINY.get(name, {})},
                     train={"steps": 2, "batch_size": 4, "device": "cpu", "progress": False})
        return train_loop(cfg, make_prepared(kind or KIND.get(name, "images"), n=8, size=32)).checkpoint
    return run


def test_translate_round_trip(trained, in_tmp):
    ckpt = trained("cyclegan")
    for i, ext in enumerate(("png", "jpg", "bmp")):
        png(in_tmp / "inputs" / f"img{i}.{ext}", size=(40, 30), value=60 * i, mode="RGB")
    (in_tmp / "inputs" / "readme.txt").write_text("not an image")
    written = translate_path(ckpt, in_tmp / "inputs", in_tmp / "out", direction="BtoA")
    assert sorted(p.name for p in written) == ["img0.png", "img1.png", "img2.png"]
    for p in written:
        with Image.open(p) as im:
            assert im.size == (32, 32) and im.mode == "L"  # the checkpoint's size and channels
    single = translate_path(ckpt, in_tmp / "inputs" / "img1.jpg", in_tmp / "one")
    assert [p.name for p in single] == ["img1.png"]


def test_translate_errors(trained, in_tmp):
    ckpt = trained("pix2pix")
    (in_tmp / "empty").mkdir()
    with pytest.raises(ConfigError, match="does not exist"):
        translate_path(ckpt, in_tmp / "nope", in_tmp / "out")
    with pytest.raises(ConfigError, match="holds no images"):
        translate_path(ckpt, in_tmp / "empty", in_tmp / "out")
    png(in_tmp / "in" / "x.png")
    with pytest.raises(ConfigError, match="cannot translate BtoA"):
        translate_path(ckpt, in_tmp / "in", in_tmp / "out", direction="BtoA")
    (in_tmp / "in" / "y.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"y\.png"):
        translate_path(ckpt, in_tmp / "in", in_tmp / "out")


def test_translate_refuses_a_noise_model(in_tmp):
    cfg = Config(variant="gan", model={"gan": {"hidden": 8, "z_dim": 4}},
                 train={"steps": 1, "batch_size": 4, "device": "cpu", "progress": False})
    ckpt = train_loop(cfg, make_prepared("images", n=8, size=16)).checkpoint
    png(in_tmp / "in" / "x.png")
    with pytest.raises(ConfigError, match="does not translate.*ganzoo sample"):
        translate_path(ckpt, in_tmp / "in", in_tmp / "out")
