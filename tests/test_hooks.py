"""One test per hook (``test_hook_<name>``), each through a real run of the engine on ``digits``.

The contract test (test_hook_contract.py) fails when a hook spec has no test here.
"""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from trickbag import TrickOptions, TrickSpec, hookimpl
from trickbag.engine.assemble import prepare_run
from trickbag.engine.loop import fit
from trickbag.errors import PluginError, UserError
from trickbag.plugins import Catalog
from trickbag.recipe import build_recipe

BASE = {
    "data": {"name": "digits", "val_size": 297},  # 1,500 training digits
    "model": {"name": "mlp", "width": 16},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "training": {"epochs": 1, "batch_size": 100},
}


def recipe(**sections):
    raw = {k: dict(v) for k, v in BASE.items()}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return build_recipe(raw)


def run(*observers, **sections):
    return fit(recipe(**sections), None, observers=list(observers))


class Counter:
    def __init__(self):
        self.calls = {}

    def hit(self, name, value=None):
        self.calls.setdefault(name, []).append(value)


def test_hook_declare_tricks():
    class Options(TrickOptions):
        factor: float = 2.0

    class Doubler:
        def __init__(self, options):
            self.factor = options.factor

        @hookimpl(wrapper=True)
        def trickbag_lr_schedule(self, base_lr, context):
            inner = yield
            return lambda p: self.factor * inner(p)

    module = types.ModuleType("trickbag_doubler")
    module.trickbag_declare_tricks = hookimpl(lambda: TrickSpec("doubler", Options, Doubler, "doubles the LR"))
    catalog = Catalog().load(extra_modules=[module])
    assert catalog.tricks["doubler"].hooks == ["trickbag_lr_schedule"]
    lrs = []

    class Rec:
        @hookimpl
        def trickbag_step_end(self, state):
            lrs.append(state.lr)

    r = build_recipe({**BASE, "tricks": {"doubler": {"factor": 3.0}}}, catalog=catalog)
    fit(r, None, observers=[Rec()], catalog=catalog)
    assert lrs == [pytest.approx(0.15)] * 15
    with pytest.raises(UserError, match="tricks.doubler.factor"):
        build_recipe({**BASE, "tricks": {"doubler": {"factor": "big"}}}, catalog=catalog)


def test_hook_build_model():
    class Brings:
        @hookimpl
        def trickbag_build_model(self, config, info):
            if config.name == "tiny_linear":
                return nn.Sequential(nn.Flatten(), nn.Linear(64, info.num_classes))
            return None

    r = recipe(model={"name": "tiny_linear"})
    run_ = prepare_run(r, observers=[Brings()])
    assert isinstance(run_.raw_model[1], nn.Linear) and run_.raw_model[1].out_features == 10
    # a name nobody brings falls through to the engine's registry, which names the culprit
    with pytest.raises(UserError, match="model.name 'tiny_linaer'"):
        prepare_run(recipe(model={"name": "tiny_linaer"}), observers=[Brings()])


def test_hook_configure_model():
    class ZeroLast:
        @hookimpl
        def trickbag_configure_model(self, model, info, context):
            last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)
            assert context.steps_per_epoch == 15

    run_ = prepare_run(recipe(), observers=[ZeroLast()])
    last = [m for m in run_.raw_model.modules() if isinstance(m, nn.Linear)][-1]
    assert torch.count_nonzero(last.weight) == 0


def test_hook_param_groups():
    class SlowHead:
        @hookimpl
        def trickbag_param_groups(self, model, groups, config):
            head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
            head_ids = {id(p) for p in head.parameters()}
            body = [p for p in groups[0]["params"] if id(p) not in head_ids]
            groups[:] = [{"params": body, "name": "body"}, {"params": list(head.parameters()), "name": "head", "lr_scale": 0.1}]

    seen = []

    class Rec:
        @hookimpl
        def trickbag_after_step(self, model, optimizer, state):
            seen.append([g["lr"] for g in optimizer.param_groups])

    run(SlowHead(), Rec())
    assert seen[0] == [pytest.approx(0.05), pytest.approx(0.005)]


def test_hook_create_optimizer():
    class Mine:
        @hookimpl
        def trickbag_create_optimizer(self, param_groups, config):
            if config.name == "plain_sgd":
                return torch.optim.SGD(param_groups, lr=config.lr)
            return None

    run_ = prepare_run(recipe(optimizer={"name": "plain_sgd"}), observers=[Mine()])
    assert type(run_.optimizer) is torch.optim.SGD and run_.optimizer.param_groups[0]["momentum"] == 0
    with pytest.raises(UserError, match="optimizer.name 'adamm' is unknown; did you mean 'adam'"):
        prepare_run(recipe(optimizer={"name": "adamm"}))


def test_hook_lr_schedule():
    class Linear:
        @hookimpl
        def trickbag_lr_schedule(self, base_lr, context):
            return lambda p: base_lr * (1 - p / context.epochs)

    class Warm:
        @hookimpl(wrapper=True)
        def trickbag_lr_schedule(self, base_lr, context):
            inner = yield
            return lambda p: inner(p) * min(1.0, (p + 1e-9) / 0.5)

    lrs = []

    class Rec:
        @hookimpl
        def trickbag_step_end(self, state):
            lrs.append((state.progress, state.lr))

    run(Linear(), Warm(), Rec(), training={"epochs": 2})
    assert len(lrs) == 30
    for p, lr in lrs:
        assert lr == pytest.approx(0.05 * (1 - p / 2) * min(1.0, (p + 1e-9) / 0.5))


def test_hook_lr_bounds():
    """Bounds reach the schedule trick's own options; a tryfirst converter rescales them first;
    the engine's default writes optimizer.lr; disagreeing edits are refused with one line."""
    from trickbag.lr_range.bounds import bound_edits

    class Schedule:
        @hookimpl
        def trickbag_lr_bounds(self, bounds, context):
            return {"tricks.mine.top": bounds.max_lr, "tricks.mine.bottom": bounds.base_lr}

    class Halver:  # e.g. the linear scaling rule at twice the reference batch
        @hookimpl(tryfirst=True)
        def trickbag_lr_bounds(self, bounds, context):
            assert bounds.global_batch_size == context.global_batch_size == 100
            bounds.max_lr, bounds.base_lr = bounds.max_lr / 2, bounds.base_lr / 2
            bounds.notes.append("halved")

    run_ = prepare_run(recipe(), observers=[Schedule(), Halver()])
    edits, notes = bound_edits(run_.pm, run_.context, 0.4, 0.01)
    assert edits == {"tricks.mine.top": 0.2, "tricks.mine.bottom": 0.005, "optimizer.lr": 0.2}
    assert notes == ["halved"]
    # without any trick: only optimizer.lr, 4 significant digits; a base at or above the max is dropped
    plain = prepare_run(recipe())
    assert bound_edits(plain.pm, plain.context, 0.123456, 0.5) == ({"optimizer.lr": 0.1235}, [])

    class Rival:
        @hookimpl
        def trickbag_lr_bounds(self, bounds, context):
            return {"optimizer.lr": 1.0}

    rival = prepare_run(recipe(), observers=[Rival()])
    with pytest.raises(PluginError, match="two tricks write optimizer.lr from the LR bounds"):
        bound_edits(rival.pm, rival.context, 0.4)


def test_hook_momentum_schedule():
    class Mom:
        @hookimpl
        def trickbag_momentum_schedule(self, base_momentum, context):
            assert base_momentum == 0.9
            return lambda p: 0.5 + 0.4 * p

    seen = []

    class Rec:
        @hookimpl
        def trickbag_after_step(self, model, optimizer, state):
            seen.append((state.progress, optimizer.param_groups[0]["momentum"], state.momentum))

    run(Mom(), Rec())
    for p, group_m, state_m in seen:
        assert group_m == state_m == pytest.approx(0.5 + 0.4 * p)


def test_hook_batch_size():
    class Grow:
        @hookimpl
        def trickbag_batch_size(self, epoch, batch_size, context):
            return batch_size * 2**epoch

    seen = []

    class Rec:
        @hookimpl
        def trickbag_epoch_start(self, state):
            seen.append((state.epoch, state.batch_size, state.steps_per_epoch))

    out = run(Grow(), Rec(), training={"epochs": 3})
    assert seen == [(0, 100, 15), (1, 200, 7), (2, 400, 3)]
    assert [row["batch_size"] for row in out["history"]] == [100, 200, 400]


def test_hook_fit_start():
    got = {}

    class Look:
        @hookimpl
        def trickbag_fit_start(self, context):
            got.update(model=context.model, optimizer=context.optimizer, lr=context.lr_schedule(0.0), total=context.total_steps)

    run(Look(), training={"epochs": 2})
    assert isinstance(got["model"], nn.Module) and isinstance(got["optimizer"], torch.optim.SGD)
    assert got["lr"] == 0.05 and got["total"] == 30


def test_hook_epoch_start():
    c = Counter()

    class Rec:
        @hookimpl
        def trickbag_epoch_start(self, state):
            c.hit("epoch_start", (state.epoch, state.step_in_epoch))

    run(Rec(), training={"epochs": 2})
    assert [e for e, _ in c.calls["epoch_start"]] == [0, 1]


def test_hook_transform_batch():
    seen = []

    class Blank:
        @hookimpl
        def trickbag_transform_batch(self, batch, state):
            batch.inputs = torch.zeros_like(batch.inputs)
            batch.targets = batch.soft_targets()

    class Look:
        @hookimpl(wrapper=True)
        def trickbag_loss(self, outputs, batch, model, state):
            seen.append((batch.inputs.abs().sum().item(), batch.is_soft, batch.targets.sum(1).mean().item()))
            return (yield)

    run(Blank(), Look())
    assert seen and all(s == (0.0, True, pytest.approx(1.0)) for s in seen)


def test_hook_loss():
    class Plus:
        @hookimpl(wrapper=True)
        def trickbag_loss(self, outputs, batch, model, state):
            loss = yield
            return loss + 10.0

    plain = run()["history"][0]["train_loss"]
    shifted = run(Plus())["history"][0]["train_loss"]
    assert shifted == pytest.approx(plain + 10.0, rel=1e-5)


def test_hook_after_backward():
    class Freeze:
        @hookimpl
        def trickbag_after_backward(self, model, state):
            for p in model.parameters():
                p.grad.zero_()

    moved = []

    class Check:
        @hookimpl
        def trickbag_fit_start(self, context):
            self.model = context.model
            self.start = [p.detach().clone() for p in context.model.parameters()]

        @hookimpl
        def trickbag_fit_end(self, state, summary):
            moved.append(any(not torch.equal(a, b) for a, b in zip(self.start, self.model.parameters())))

    run(Freeze(), Check())  # zero gradients (and zero momentum buffers): SGD leaves weights alone
    run(Check())
    assert moved == [False, True]


def test_hook_after_step():
    class Clamp:
        @hookimpl
        def trickbag_after_step(self, model, optimizer, state):
            with torch.no_grad():
                for p in model.parameters():
                    p.clamp_(-0.01, 0.01)

    maxima = []

    class Rec:
        @hookimpl
        def trickbag_step_end(self, state):
            pass

        @hookimpl
        def trickbag_fit_start(self, context):
            self.model = context.model

        @hookimpl
        def trickbag_fit_end(self, state, summary):
            maxima.append(max(p.abs().max().item() for p in self.model.parameters()))

    run(Clamp(), Rec())
    assert maxima[0] <= 0.01 + 1e-7


def test_hook_step_end():
    seen = []

    class Rec:
        @hookimpl
        def trickbag_step_end(self, state):
            seen.append((state.global_step, state.samples_seen, state.loss.item()))

    run(Rec(), training={"epochs": 2})
    assert [s for s, _, _ in seen] == list(range(1, 31))
    assert seen[-1][1] == 3000 and all(loss > 0 for _, _, loss in seen)


def test_hook_eval_end():
    seen = []

    class Rec:
        @hookimpl
        def trickbag_eval_end(self, state, metrics):
            seen.append(dict(metrics))

    out = run(Rec(), training={"epochs": 2})
    assert len(seen) == 2 and set(seen[0]) == {"val_loss", "val_acc"}
    # > 0.5: it trained (chance 0.1; 0.87 measured here, a margin no CPU difference closes)
    assert seen[-1]["val_acc"] == out["history"][-1]["val_acc"] > 0.5


def test_hook_eval_model(tmp_path):
    """The module trickbag_eval_model answers is what validation scores, what best.pt holds and what
    checkpoint.pt keeps as eval_model (load_model's answer), while checkpoint.pt's model stays the
    training weights --resume continues; None evaluates the training model."""
    import copy

    from trickbag.data import load_data
    from trickbag.engine.evaluate import evaluate
    from trickbag.runs.checkpoint import load_checkpoint
    from trickbag.runs.model import load_model

    class Frozen:  # an average that never moves: the initial weights
        def __init__(self):
            self.asked = []

        @hookimpl
        def trickbag_fit_start(self, context):
            self.training_model = context.model
            self.frozen = copy.deepcopy(context.model)

        @hookimpl
        def trickbag_eval_model(self, model, state):
            assert model is self.training_model
            self.asked.append(state.epoch)
            return self.frozen

    class Nothing:
        @hookimpl
        def trickbag_eval_model(self, model, state):
            return None

    frozen = Frozen()
    out = fit(recipe(training={"epochs": 2}), tmp_path / "run", observers=[frozen])
    plain = run(training={"epochs": 2})
    assert frozen.asked == [0, 1]  # once per epoch, after its steps
    _, val = load_data(recipe().data, torch.device("cpu"))
    initial = evaluate(frozen.frozen, val, 1000, None, torch.device("cpu"))
    assert [h["val_acc"] for h in out["history"]] == [initial["val_acc"]] * 2  # scored: the frozen copy
    assert [h["train_loss"] for h in out["history"]] == [h["train_loss"] for h in plain["history"]]  # trained as usual
    assert plain["history"][-1]["val_acc"] > initial["val_acc"] + 0.3  # and the trained model would score far better
    saved, best = load_checkpoint(tmp_path / "run" / "checkpoint.pt"), torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    want = frozen.frozen.state_dict()
    for key, value in want.items():
        assert torch.equal(best["model"][key], value) and torch.equal(saved["eval_model"][key], value), key
        assert not torch.equal(saved["model"][key], value), key  # the training weights, for --resume
    loaded = load_model(tmp_path / "run")
    assert all(torch.equal(v, want[k]) for k, v in loaded.model.state_dict().items())
    trained = load_model(tmp_path / "run", weights="trained")
    assert all(torch.equal(v, saved["model"][k]) for k, v in trained.model.state_dict().items())
    # None: the training model is scored, exactly as without the hook; checkpoint.pt has no eval_model
    nothing = fit(recipe(training={"epochs": 2}), tmp_path / "none", observers=[Nothing()])
    assert nothing["history"] == [{**h, "seconds": n["seconds"]} for h, n in zip(plain["history"], nothing["history"])]
    assert "eval_model" not in load_checkpoint(tmp_path / "none" / "checkpoint.pt")


def test_eval_model_answers_are_checked_and_rivals_refused():
    class Wrapped:  # an AveragedModel itself: its state_dict has module.* keys, which best.pt cannot hold
        @hookimpl
        def trickbag_fit_start(self, context):
            self.average = torch.optim.swa_utils.AveragedModel(context.model)

        @hookimpl
        def trickbag_eval_model(self, model, state):
            return self.average

    class NotAModule:
        @hookimpl
        def trickbag_eval_model(self, model, state):
            return model.state_dict()

    with pytest.raises(PluginError, match=r"trickbag_eval_model returned a module whose state_dict does not match the model's "
                                          r"\(first differing key: [a-z0-9._]+\); return a copy of the model, not a wrapper"):
        run(Wrapped())
    with pytest.raises(PluginError, match="trickbag_eval_model returned a OrderedDict, not a torch module"):
        run(NotAModule())

    class Options(TrickOptions):
        pass

    class Average:
        def __init__(self, options):
            pass

        @hookimpl
        def trickbag_eval_model(self, model, state):
            return None

    module = types.ModuleType("trickbag_averages")
    module.trickbag_declare_tricks = hookimpl(lambda: [TrickSpec(n, Options, Average, n) for n in ("avg_a", "avg_b")])
    catalog = Catalog().load(extra_modules=[module])
    r = build_recipe({**BASE, "tricks": {"avg_b": {}, "avg_a": {}}}, catalog=catalog)
    with pytest.raises(UserError, match="tricks avg_a and avg_b both decide trickbag_eval_model; enable only one of them"):
        prepare_run(r, catalog=catalog)


def test_hook_epoch_end():
    rows = []

    class Rec:
        @hookimpl
        def trickbag_epoch_end(self, state, metrics):
            rows.append(metrics)

    run(Rec(), training={"epochs": 2})
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"epoch", "progress", "train_loss", "val_loss", "val_acc", "lr", "momentum", "batch_size", "steps", "seconds"} == set(rows[0])
    assert rows[0]["momentum"] == 0.9  # fixed momentum is reported, not null


def test_hook_fit_end():
    """fit_end sees the run's summary: best = the highest epoch's val_acc, final = the last one's.
    The last epoch is made worse on purpose (weights zeroed), so the two differ."""
    got, rows = [], []

    class Rec:
        @hookimpl
        def trickbag_after_step(self, model, optimizer, state):
            if state.epoch == 2:
                with torch.no_grad():
                    for p in model.parameters():
                        p.zero_()

        @hookimpl
        def trickbag_epoch_end(self, state, metrics):
            rows.append(metrics["val_acc"])

        @hookimpl
        def trickbag_fit_end(self, state, summary):
            got.append(summary)

    out = run(Rec(), training={"epochs": 3})
    assert len(got) == 1 and got[0] is out
    assert out["best_val_acc"] == max(rows) > rows[-1] == out["final_val_acc"]
    assert out["epochs"] == 3 and [h["val_acc"] for h in out["history"]] == rows


def test_hook_check():
    """A trick's own check runs before any work and refuses bad input as a UserError (exit 2)."""
    built = []

    class Options(TrickOptions):
        teacher: str

    class Teacher:
        def __init__(self, options):
            self.teacher = options.teacher

        @hookimpl
        def trickbag_check(self, context):
            import os

            if not os.path.isdir(self.teacher):
                raise UserError(f"tricks.teacher.teacher '{self.teacher}' is not a run folder")

        @hookimpl
        def trickbag_build_model(self, config, info):
            built.append(config.name)  # never reached when the check fails

    module = types.ModuleType("trickbag_teacher")
    module.trickbag_declare_tricks = hookimpl(lambda: TrickSpec("teacher", Options, Teacher, "needs a folder"))
    catalog = Catalog().load(extra_modules=[module])
    r = build_recipe({**BASE, "tricks": {"teacher": {"teacher": "/nonexistent/run"}}}, catalog=catalog)
    with pytest.raises(UserError, match="tricks.teacher.teacher '/nonexistent/run' is not a run folder"):
        prepare_run(r, catalog=catalog)
    assert built == []
    ok = build_recipe({**BASE, "tricks": {"teacher": {"teacher": "."}}}, catalog=catalog)
    prepare_run(ok, catalog=catalog).release()
    assert built == ["mlp"]


def test_tricks_are_called_in_recipe_order():
    order = []

    class Options(TrickOptions):
        pass

    def make(name):
        class Trick:
            def __init__(self, options):
                pass

            @hookimpl
            def trickbag_transform_batch(self, batch, state):
                order.append(name)

            @hookimpl(wrapper=True)
            def trickbag_loss(self, outputs, batch, model, state):
                order.append(f"{name}>")
                loss = yield
                order.append(f"<{name}")
                return loss

        return Trick

    module = types.ModuleType("trickbag_order")
    module.trickbag_declare_tricks = hookimpl(lambda: [TrickSpec(n, Options, make(n), n) for n in ("first", "second")])
    catalog = Catalog().load(extra_modules=[module])
    for names in (["first", "second"], ["second", "first"]):
        order.clear()
        r = build_recipe({**BASE, "training": {"epochs": 0.01, "batch_size": 100}, "tricks": {n: {} for n in names}}, catalog=catalog)
        fit(r, None, catalog=catalog)
        a, b = names
        assert order == [a, b, f"{a}>", f"{b}>", f"<{b}", f"<{a}"]  # one step: transforms, then wrappers nested


def test_a_raising_trick_is_named_with_its_hook():
    class Broken:
        @hookimpl
        def trickbag_transform_batch(self, batch, state):
            raise ValueError("boom")

    with pytest.raises(PluginError, match=r"raised in trickbag_transform_batch: ValueError: boom"):
        run(Broken())


def test_misspelt_hook_fails_loudly():
    class Typo:
        @hookimpl
        def trickbag_tranform_batch(self, batch, state):
            pass

    with pytest.raises(PluginError, match="observer 'Typo' implements unknown hook 'trickbag_tranform_batch'; did you mean 'trickbag_transform_batch'"):
        run(Typo())


def test_a_hook_argument_the_hook_does_not_pass_is_named():
    class WrongArgs:
        @hookimpl
        def trickbag_loss(self, outputs, labels):
            pass

    with pytest.raises(PluginError, match=r"observer 'WrongArgs': trickbag_loss\(\) takes 'labels', which the hook does not pass \(it passes: outputs, batch, model, state\)"):
        run(WrongArgs())


def test_a_hook_method_without_hookimpl_is_a_warning(caplog):
    class Forgot:
        def trickbag_step_end(self, state):
            raise AssertionError("never called")

    with caplog.at_level("WARNING", logger="trickbag"):
        run(Forgot(), training={"epochs": 0.1})
    assert "observer 'Forgot': trickbag_step_end() has no @hookimpl, so it is never called" in caplog.text


def test_two_tricks_deciding_the_same_hook_are_refused():
    class Options(TrickOptions):
        pass

    class Flat:
        def __init__(self, options):
            pass

        @hookimpl
        def trickbag_lr_schedule(self, base_lr, context):
            return lambda p: base_lr

    module = types.ModuleType("trickbag_flat")
    module.trickbag_declare_tricks = hookimpl(lambda: TrickSpec("flat", Options, Flat, "constant LR"))
    catalog = Catalog().load(extra_modules=[module])
    r = build_recipe({**BASE, "tricks": {"flat": {}, "one_cycle": {}}}, catalog=catalog)
    with pytest.raises(UserError, match="tricks flat and one_cycle both decide trickbag_lr_schedule"):
        prepare_run(r, catalog=catalog)
