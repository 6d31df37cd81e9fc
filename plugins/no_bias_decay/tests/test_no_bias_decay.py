import copy
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from trickbag.testing import plugin_row
from trickbag_no_bias_decay import NoBiasDecay, NoBiasDecayOptions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: see trickbag.testing


def test_listed_by_trickbag_plugins():
    row = plugin_row("no_bias_decay")
    assert row["hooks"] == ["trickbag_param_groups"]
    assert row["options"]["exclude_embeddings"]["default"] is False
    assert row["distribution"] == "trickbag-no-bias-decay"


def split(model, groups=None, **options):
    groups = groups if groups is not None else [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}]
    NoBiasDecay(NoBiasDecayOptions(**options)).trickbag_param_groups(model=model, groups=groups, config=None)
    return groups


def ids(params):
    return sorted(id(p) for p in params)


def misleading_net():
    """Conv/BN/GroupNorm/Linear/LayerNorm with names that lie: the BatchNorm is called 'conv', a
    Linear is called 'bn', a LayerNorm 'head'. Membership must follow module types."""
    return nn.Sequential(OrderedDict([
        ("bn", nn.Conv2d(3, 8, 3, padding=1)),  # a conv with a bias
        ("conv", nn.BatchNorm2d(8)),
        ("relu", nn.ReLU()),
        ("norm_free", nn.Conv2d(8, 8, 3, padding=1, bias=False)),
        ("gn", nn.GroupNorm(2, 8)),
        ("pool", nn.AdaptiveAvgPool2d(2)),
        ("flat", nn.Flatten()),
        ("fc_bias", nn.Linear(32, 16)),
        ("head", nn.LayerNorm(16)),
        ("out", nn.Linear(16, 10)),
    ]))


def test_exact_membership_by_module_type():
    net = misleading_net()
    groups = split(net)
    assert [g["name"] for g in groups] == ["all", "all.no_decay"]
    assert "weight_decay" not in groups[0] and groups[1]["weight_decay"] == 0.0
    decay = [net.bn.weight, net.norm_free.weight, net.fc_bias.weight, net.out.weight]
    no_decay = [net.bn.bias, net.conv.weight, net.conv.bias, net.gn.weight, net.gn.bias,
                net.fc_bias.bias, net.head.weight, net.head.bias, net.out.bias]
    assert ids(groups[0]["params"]) == ids(decay)
    assert ids(groups[1]["params"]) == ids(no_decay)


def test_cifar_resnet20_membership_and_every_parameter_once():
    from trickbag.models import build_model

    info = SimpleNamespace(name="fake", num_classes=10, in_channels=3, image_size=(32, 32), train_size=100, val_size=10,
                           mean=(0.5,) * 3, std=(0.25,) * 3)
    model = build_model("resnet20", info, {})
    groups = split(model)
    convs_and_fc = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    bns = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in (m.weight, m.bias)]
    fc_bias = [m.bias for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs_and_fc) == 19 + 1 and len(bns) == 2 * 19  # 19 conv+BN pairs, one classifier
    assert ids(groups[0]["params"]) == ids(convs_and_fc)
    assert ids(groups[1]["params"]) == ids(bns + fc_bias)
    every = [id(p) for g in groups for p in g["params"]]
    assert len(every) == len(set(every))  # nothing twice
    assert sorted(every) == ids(model.parameters())  # nothing missing


def test_sgd_step_with_zero_gradients_decays_only_conv_and_linear_weights():
    torch.manual_seed(0)
    net = misleading_net()
    for m in net.modules():  # non-trivial norm weights, so "unchanged" means something
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    plain = copy.deepcopy(net)
    lr, wd = 0.1, 0.05
    optimizer = torch.optim.SGD(split(net), lr=lr, momentum=0.9, weight_decay=wd)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    decayed = {"bn.weight", "norm_free.weight", "fc_bias.weight", "out.weight"}
    for name, p in net.named_parameters():
        if name in decayed:
            assert torch.allclose(p, before[name] * (1 - lr * wd), rtol=1e-6), name
            assert not torch.equal(p, before[name])
        else:
            assert torch.equal(p, before[name]), name
    # without the trick every parameter shrinks, biases and norm weights included
    opt = torch.optim.SGD(plain.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    for p in plain.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in plain.named_parameters():
        assert torch.allclose(p, before[name] * (1 - lr * wd), rtol=1e-6), name


def test_existing_groups_are_split_keeping_their_keys_and_empty_parts_dropped():
    net = misleading_net()
    body = [p for name, p in net.named_parameters() if not name.startswith("out.")]
    groups = [
        {"params": body, "name": "body", "lr_scale": 0.5, "weight_decay": 1e-3},
        {"params": [net.out.bias], "name": "head_bias", "lr_scale": 2.0},  # nothing to decay: no empty group
        {"params": net.out.weight, "name": "head_weight"},  # a bare tensor is accepted as torch does
    ]
    groups = split(net, groups)
    assert [(g["name"], g["lr_scale"] if "lr_scale" in g else None, g.get("weight_decay")) for g in groups] == [
        ("body", 0.5, 1e-3), ("body.no_decay", 0.5, 0.0), ("head_bias.no_decay", 2.0, 0.0), ("head_weight", None, None),
    ]
    assert ids(groups[0]["params"]) == ids([net.bn.weight, net.norm_free.weight, net.fc_bias.weight])
    assert ids(groups[2]["params"]) == ids([net.out.bias])
    assert sorted(id(p) for g in groups for p in g["params"]) == ids(net.parameters())


def test_embeddings_are_decayed_unless_excluded():
    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.rnn = nn.GRU(8, 8, batch_first=True)
            self.fc = nn.Linear(8, 2)

    model = Text()
    rnn_biases = [model.rnn.bias_ih_l0, model.rnn.bias_hh_l0]
    groups = split(model)
    assert ids(groups[0]["params"]) == ids([model.embed.weight, model.rnn.weight_ih_l0, model.rnn.weight_hh_l0, model.fc.weight])
    assert ids(groups[1]["params"]) == ids(rnn_biases + [model.fc.bias])
    groups = split(model, exclude_embeddings=True)
    assert ids(groups[1]["params"]) == ids([model.embed.weight] + rnn_biases + [model.fc.bias])


def test_engine_builds_the_optimizer_with_the_two_groups():
    from trickbag.engine.assemble import prepare_run
    from trickbag.recipe import build_recipe

    def prepare(tricks):
        recipe = build_recipe({
            "data": {"name": "digits", "val_size": 297},
            "model": {"name": "small_cnn", "width": 4},
            "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 5e-4},
            "training": {"epochs": 1, "batch_size": 100, "device": "cpu"},
            "tricks": tricks,
        })
        return prepare_run(recipe)

    run = prepare({"no_bias_decay": {}})
    model, groups = run.raw_model, run.optimizer.param_groups
    assert [(g["name"], g["weight_decay"]) for g in groups] == [("all", 5e-4), ("all.no_decay", 0.0)]
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert ids(groups[0]["params"]) == ids(weights)
    assert len(groups[1]["params"]) == len(list(model.parameters())) - len(weights) > 0
    assert len(run.group_scales) == 2  # the loop sets the scheduled LR on both groups
    plain = prepare({})
    assert [(g["name"], g["weight_decay"]) for g in plain.optimizer.param_groups] == [("all", 5e-4)]
