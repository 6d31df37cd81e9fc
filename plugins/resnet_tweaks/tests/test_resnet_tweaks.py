"""ResNet-A/B/C/D: parameter counts and multiply-adds of ResNet-50 at 224×224 against Table 5 of
He et al. 2019, the structure of each tweak checked against an independent computation, output
shapes unchanged, ResNet-18's meaning of the variants, refusals, and real runs (bf16/fp16, resume,
lr-find)."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.resnet import BasicBlock, Bottleneck
from trickbag.cli.app import app
from trickbag.data import DataInfo
from trickbag.recipe import build_recipe
from trickbag.runs.model import build_model
from trickbag.testing import assert_one_line_error as one_line_error
from trickbag.testing import plugin_row
from typer.testing import CliRunner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing

IMAGENET = DataInfo("fake", 1000, 3, (224, 224), 100, 10, (0.5,) * 3, (0.25,) * 3)
CIFAR = DataInfo("fake", 10, 3, (32, 32), 100, 10, (0.5,) * 3, (0.25,) * 3)
GREY = DataInfo("fake", 10, 1, (8, 8), 100, 10, (0.5,), (0.25,))
DIGITS = ["--set", "data.name=digits", "--set", "data.val_size=100"]
VARIANTS = ["A", "B", "C", "D"]


def model(name, variant=None, info=IMAGENET, device="cpu", seed=0, **options):
    """The recipe's model exactly as a run builds it (build_model + configure_model hooks), seeded."""
    tricks = {} if variant is None else {"resnet_tweaks": {"variant": variant}}
    recipe = build_recipe({"model": {"name": name, **options}, "tricks": tricks})
    torch.manual_seed(seed)
    with torch.device(device):
        return build_model(recipe, info)


def test_listed_by_trickbag_plugins():
    row = plugin_row("resnet_tweaks")
    assert row["hooks"] == ["trickbag_configure_model"]
    assert row["options"]["variant"]["default"] == "D"
    assert row["options"]["variant"]["enum"] == VARIANTS
    assert row["distribution"] == "trickbag-resnet-tweaks"


# -- oracle: Table 5 of He et al. 2019 ---------------------------------------------------------------

# (parameters, GMACs) as printed in Table 5 for ResNet-50 and ResNet-50-B/C/D
TABLE5 = {"A": (25e6, 3.8), "B": (25e6, 4.1), "C": (25e6, 4.3), "D": (25e6, 4.3)}
# what this implementation measures (exact integers: any change of the architecture moves them)
MEASURED = {"A": (25_557_032, 3_857_973_248), "B": (25_557_032, 4_089_184_256),
            "C": (25_576_264, 4_328_824_832), "D": (25_576_264, 4_328_824_832)}


def count(net, size=224):
    """(parameters, multiply-adds, output shape, stage output shapes) of one 3×size×size image, on the
    meta device (shapes only: no memory, no arithmetic). FlopCounterMode counts 2 FLOPs per MAC."""
    shapes = []
    net.eval()  # BN on a single 1×1 image refuses training mode
    hooks = [getattr(net, f"layer{i}").register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for i in (1, 2, 3, 4)]
    x = torch.empty(1, net_in_channels(net), size, size, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = net(x)
    for h in hooks:
        h.remove()
    return sum(p.numel() for p in net.parameters()), counter.get_total_flops() // 2, tuple(out.shape), shapes


def net_in_channels(net):
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels


@pytest.fixture(scope="module")
def resnet50_counts():
    return {v: count(model("resnet50", v, device="meta")) for v in VARIANTS} | {"plain": count(model("resnet50", None, device="meta"))}


def test_resnet50_counts_are_the_measured_ones_and_shapes_unchanged(resnet50_counts):
    plain = resnet50_counts["plain"]
    assert plain[:2] == MEASURED["B"]  # torchvision's resnet50 is ResNet-B
    for v in VARIANTS:
        params, macs, out, stages = resnet50_counts[v]
        assert (params, macs) == MEASURED[v], v
        assert out == (1, 1000) and stages == plain[3] == [(1, 256, 56, 56), (1, 512, 28, 28), (1, 1024, 14, 14), (1, 2048, 7, 7)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_resnet50_matches_table_5_to_its_printed_precision(resnet50_counts, variant):
    """Every entry is within one unit of the printed last digit. Table 5 is not rounded one way:
    25.56M prints as 25M and 3.858G as 3.8 (truncated; the 3.8 is He et al. 2016's own figure for the
    original ResNet-50), 4.089G as 4.1 (rounded); C and D's 4.329G is 4.3 either way."""
    params, macs, _, _ = resnet50_counts[variant]
    printed_params, printed_macs = TABLE5[variant]
    assert abs(params - printed_params) < 1e6 and math.floor(params / 1e6) == 25
    g = macs / 1e9
    assert abs(g - printed_macs) < 0.1
    assert printed_macs in (round(g, 1), math.floor(g * 10) / 10)
    if variant != "A":
        assert round(g, 1) == printed_macs  # B, C, D: rounded to one decimal as printed
    else:
        assert math.floor(g * 10) / 10 == printed_macs and round(g, 1) == 3.9


def test_the_stride_placement_gives_the_a_to_b_increase(resnet50_counts):
    """A → B moves the stride of the first block of stages 2-4 from the 1×1 conv to the 3×3 conv: the
    1×1 conv (cin → width) then runs at full resolution H² instead of (H/2)². Analytically
    Σ cin·width·(H² − H²/4) over (256, 128, 56), (512, 256, 28), (1024, 512, 14) = 3 × 77,070,336;
    Table 5's 3.8 → 4.1 (the difference 0.3 ± 0.1 at its precision)."""
    a, b = resnet50_counts["A"][1], resnet50_counts["B"][1]
    analytic = sum(cin * width * (h * h - (h // 2) ** 2) for cin, width, h in [(256, 128, 56), (512, 256, 28), (1024, 512, 14)])
    assert b - a == analytic == 231_211_008
    assert 0.2 < (b - a) / 1e9 < 0.4  # 4.1 - 3.8 at the table's precision
    # C adds the deep stem's 3×3 convs at 112×112 minus the 7×7 conv's MACs; D's avg-pool costs no MAC
    c, d = resnet50_counts["C"][1], resnet50_counts["D"][1]
    stem = 112 * 112 * (3 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9) - 112 * 112 * 3 * 64 * 49
    assert c - b == stem and d == c


# -- each tweak against an independent computation --------------------------------------------------

def first_blocks(net):
    return [getattr(net, f"layer{i}")[0] for i in (2, 3, 4)]


def test_b_is_torchvision_as_built():
    ours, plain = model("resnet50", "B"), model("resnet50", None)
    assert str(ours) == str(plain)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), plain.state_dict().values()))
    assert [(b.conv1.stride, b.conv2.stride) for b in first_blocks(ours)] == [((1, 1), (2, 2))] * 3


def bottleneck_a(block, x):
    """The original (Caffe) bottleneck of He et al. 2016: stride 2 in the first 1×1 conv."""
    out = F.relu(block.bn1(F.conv2d(x, block.conv1.weight, stride=2)))
    out = F.relu(block.bn2(F.conv2d(out, block.conv2.weight, padding=1)))
    out = block.bn3(F.conv2d(out, block.conv3.weight))
    shortcut = block.downsample[1](F.conv2d(x, block.downsample[0].weight, stride=2))
    return F.relu(out + shortcut)


def test_a_strides_the_first_1x1_conv_and_keeps_every_weight():
    ours, plain = model("resnet50", "A").eval(), model("resnet50", None).eval()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), plain.state_dict().values()))
    assert [(b.conv1.stride, b.conv2.stride) for b in first_blocks(ours)] == [((2, 2), (1, 1))] * 3
    changed = [b for b in ours.modules() if isinstance(b, Bottleneck) and b.conv1.stride != (1, 1)]
    assert len(changed) == 3  # only the downsampling blocks
    x = torch.relu(torch.randn(2, 512, 15, 15, generator=torch.Generator().manual_seed(0)))  # odd size too
    block = ours.layer3[0]
    with torch.no_grad():
        assert torch.allclose(block(x), bottleneck_a(block, x), atol=1e-5)
        assert not torch.allclose(plain.layer3[0](x), bottleneck_a(block, x), atol=1e-3)  # B is another function


@pytest.mark.parametrize("variant", ["C", "D"])
def test_c_has_the_deep_stem_and_nothing_else_moves(variant):
    ours, plain = model("resnet50", variant), model("resnet50", None)
    stem = ours.conv1
    convs = [m for m in stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 32, (3, 3), (2, 2), (1, 1)), (32, 32, (3, 3), (1, 1), (1, 1)), (32, 64, (3, 3), (1, 1), (1, 1))]
    assert [type(m) for m in stem] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2 + [nn.Conv2d]
    assert all(c.bias is None for c in convs)
    # torchvision's init for the new convs: Kaiming normal, fan-out (std sqrt(2 / (out·9)))
    for c in convs:
        assert c.weight.std().item() == pytest.approx(math.sqrt(2 / (c.out_channels * 9)), rel=0.15)
    # every other tensor is torchvision's (same seed; D's pool shifts the shortcut's index by one)
    def torchvision_key(key):
        parts = key.split(".")
        if variant == "D" and parts[0] in ("layer2", "layer3", "layer4") and parts[1:3] == ["0", "downsample"]:
            parts[3] = str(int(parts[3]) - 1)
        return ".".join(parts)

    theirs = plain.state_dict()
    rest = {torchvision_key(k): v for k, v in ours.state_dict().items() if not k.startswith("conv1.")}
    assert set(rest) == set(theirs) - {"conv1.weight"}
    for k, v in rest.items():
        assert torch.equal(v, theirs[k]), k


def test_d_average_pools_before_a_stride_1_shortcut_conv():
    ours, plain = model("resnet50", "D").eval(), model("resnet50", None).eval()
    for block, theirs in zip(first_blocks(ours), first_blocks(plain)):
        pool, conv, bn = block.downsample
        assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == pool.stride == (2, 2)
        assert conv.stride == (1, 1) and conv.kernel_size == (1, 1)
        assert torch.equal(conv.weight, theirs.downsample[0].weight)  # the same weights, re-strided
        # an independent D shortcut: bn(conv1×1(avg_pool2d(x, 2)))
        x = torch.randn(2, conv.in_channels, 14, 14, generator=torch.Generator().manual_seed(1), requires_grad=True)
        got = block.downsample(x)
        assert torch.allclose(got, bn(F.conv2d(F.avg_pool2d(x, 2), conv.weight)), atol=1e-6)
        # the point of D: the shortcut sees every input pixel; B's strided 1×1 conv only one in four
        got.sum().backward()
        assert (x.grad.abs().sum(dim=(0, 1)) > 0).all()
        x.grad = None
        theirs.downsample(x).sum().backward()
        assert (x.grad.abs().sum(dim=(0, 1)) > 0).float().mean() == 0.25
    assert ours.layer1[0].downsample[0].stride == (1, 1) and len(ours.layer1[0].downsample) == 2  # channels-only projection kept


@pytest.mark.parametrize("name, size", [("resnet18", 8), ("resnet18", 97), ("resnet50", 33)])  # 224: above
def test_output_and_stage_shapes_unchanged_at_any_size(name, size):
    """Odd sizes too: the 1×1 stride-2 conv (A) and the ceil-mode pool (D) give the strided 3×3 conv's size."""
    info = GREY if size == 8 else IMAGENET
    plain = count(model(name, None, info=info, device="meta"), size)
    for v in VARIANTS:
        assert count(model(name, v, info=info, device="meta"), size)[2:] == plain[2:], v


def test_small_input_keeps_the_stride_1_stem():
    """With model.small_input (3×3 stride-1 stem, no max-pool, for 32×32 images) C and D keep stride 1
    in the deep stem's first conv: 32×32 still reaches layer1 at 32×32."""
    net = model("resnet18", "D", info=CIFAR, small_input=True)
    assert [m.stride for m in net.conv1 if isinstance(m, nn.Conv2d)] == [(1, 1)] * 3
    assert count(model("resnet18", "D", info=CIFAR, device="meta", small_input=True), 32)[3][0] == (1, 64, 32, 32)


def test_resnet18_variants():
    """Basic blocks: two 3×3 convs, torchvision strides the first as the original paper did, so A and
    B are torchvision's resnet18 unchanged; C adds the deep stem, D also pools the 3 shortcuts."""
    plain = model("resnet18", None)
    for v in ("A", "B"):
        ours = model("resnet18", v)
        assert str(ours) == str(plain)
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), plain.state_dict().values()))
    c, d = model("resnet18", "C"), model("resnet18", "D")
    assert isinstance(c.conv1, nn.Sequential) and isinstance(d.conv1, nn.Sequential)
    pooled = [b for b in d.modules() if isinstance(b, BasicBlock) and b.downsample is not None and isinstance(b.downsample[0], nn.AvgPool2d)]
    assert len(pooled) == 3
    assert not any(isinstance(b.downsample[0], nn.AvgPool2d) for b in c.modules() if isinstance(b, BasicBlock) and b.downsample is not None)
    counts = {v: count(model("resnet18", v, device="meta"))[:2] for v in VARIANTS}
    assert counts["A"] == counts["B"] == (11_689_512, 1_814_073_344)  # torchvision's resnet18
    assert counts["C"] == counts["D"] == (11_689_512 + 19_232, 2_053_713_920)  # the same stem as ResNet-50's


def test_new_stem_parameters_are_trained():
    """configure_model runs before the optimizer is built: the deep stem's parameters are in it."""
    from trickbag.engine.assemble import prepare_run

    recipe = build_recipe({"data": {"name": "digits", "val_size": 100}, "model": {"name": "resnet18"},
                           "training": {"epochs": 1, "batch_size": 50, "device": "cpu"}, "tricks": {"resnet_tweaks": {"variant": "D"}}})
    run = prepare_run(recipe)
    run.release()
    in_optimizer = {id(p) for g in run.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in run.raw_model.conv1.parameters()} <= in_optimizer
    assert in_optimizer == {id(p) for p in run.raw_model.parameters()}
    assert run.raw_model.conv1[0].in_channels == 1  # digits are grey


def test_composes_with_zero_gamma_in_either_order():
    """Both edit the model in place and touch different tensors: the recipe order does not matter."""
    pytest.importorskip("trickbag_zero_gamma")

    def build(tricks):
        torch.manual_seed(0)
        return build_model(build_recipe({"model": {"name": "resnet50"}, "tricks": tricks}), IMAGENET).state_dict()

    first = build({"zero_gamma": {}, "resnet_tweaks": {"variant": "D"}})
    second = build({"resnet_tweaks": {"variant": "D"}, "zero_gamma": {}})
    assert list(first) == list(second) and all(torch.equal(first[k], second[k]) for k in first)
    gammas = [k for k in first if k.endswith("bn3.weight")]
    assert len(gammas) == 16 and all(not first[k].any() for k in gammas)
    assert "layer2.0.downsample.2.weight" in first and first["conv1.1.weight"].eq(1).all()  # D's shortcut BN, the stem's BN


# -- refusals and options ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet20", "resnet56", "small_cnn"])
def test_models_that_are_not_torchvision_resnets_are_refused_in_one_line(tmp_path, name):
    path = tmp_path / "r.toml"
    path.write_text(f'[model]\nname = "{name}"\n\n[tricks.resnet_tweaks]\n')
    one_line_error(CliRunner().invoke(app, ["check", str(path), *DIGITS]), "tricks.resnet_tweaks", f"model.name '{name}'", "not a torchvision ResNet")


@pytest.mark.parametrize("table, needles", [
    ('variant = "E"', ["tricks.resnet_tweaks.variant", "'A', 'B', 'C' or 'D'"]),
    ('variant = "d"', ["tricks.resnet_tweaks.variant"]),
    ("variant = 4", ["tricks.resnet_tweaks.variant"]),
    ("stem_width = 32", ["tricks.resnet_tweaks", "stem_width"]),
])
def test_bad_options_are_one_line_errors_naming_the_option(tmp_path, table, needles):
    path = tmp_path / "r.toml"
    path.write_text(f'[model]\nname = "resnet18"\n\n[tricks.resnet_tweaks]\n{table}\n')
    one_line_error(CliRunner().invoke(app, ["check", str(path), *DIGITS]), *needles)


# -- real runs: precision, checkpoints, LR range test -----------------------------------------------

# fp16 backward on a CPU is slow (~0.5 s per 8×8 image through resnet18): batches of 4, one step.
# small_input: with the 7×7/2 stem and max-pool, 8×8 digits reach layer3 at 1×1, where torch's bf16
# CPU backward of the stride-2 3×3 conv now and then gives a non-finite weight gradient (seen with
# plain torchvision resnet18 and torch alone, about 1 step in 40: not this trick)
RUN = ('[model]\nname = "resnet18"\nsmall_input = true\n\n[optimizer]\nname = "sgd"\nlr = 0.01\n\n[training]\nepochs = 0.002\nbatch_size = 4\n\n'
       '[tricks.resnet_tweaks]\nvariant = "D"\n')


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_tiny_run_then_resume_and_load(tmp_path, precision):
    """A one-step `trickbag run` of ResNet-18-D in bf16/fp16 on the CPU; `--resume` extends the bf16
    one (fp16 steps cost ~2 s here); `load_model` rebuilds the rewritten architecture and loads the
    checkpoint's weights."""
    from trickbag import load_model
    from trickbag.runs.checkpoint import load_checkpoint

    path = tmp_path / "r.toml"
    path.write_text(RUN)
    out = tmp_path / "run"
    sets = ["--set", "data.name=digits", "--set", "data.val_size=40", "--set", f'training.precision="{precision}"']
    result = CliRunner().invoke(app, ["run", str(path), *sets, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    epochs = [(1, 1)]
    if precision == "bf16":
        result = CliRunner().invoke(app, ["run", "--resume", str(out), "--epochs", "1.002", "-q"])
        assert result.exit_code == 0, result.output
        epochs.append((2, 2))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["steps"]) for r in rows] == epochs  # steps: optimizer steps so far
    assert all(math.isfinite(r["train_loss"]) for r in rows)
    loaded = load_model(out)
    saved = load_checkpoint(out / "checkpoint.pt")["model"]
    assert any(k.startswith("conv1.6.") for k in saved) and "layer2.0.downsample.2.weight" in saved
    state = loaded.model.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)


def test_lr_find_runs_with_the_trick(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RUN.replace("batch_size = 4", "batch_size = 16"))
    out = tmp_path / "lr"
    result = CliRunner().invoke(app, ["lr-find", str(path), *DIGITS, "--steps", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "lr_find.json").exists()


def test_torchvision_reference_counts():
    """The counting itself: torchvision's resnet50 built directly has the B numbers."""
    with torch.device("meta"):
        net = torchvision.models.resnet50()
    assert count(net)[:2] == MEASURED["B"]
