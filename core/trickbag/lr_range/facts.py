"""What the recipe says about how the recommended LR will be used, which a range-test curve cannot.

A sweep is a few hundred steps at one momentum; the run is thousands of steps under a schedule.
:class:`RecipeFacts` collects the run's side (schedule kind, length, momentum, batch) so that the
recommendation can take it into account (``suggest.adjust_for_recipe``) and the benchmark can
learn how (``benchmarks/lr_suggestion.py``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trickbag.engine.assemble import Run


@dataclass(frozen=True)
class RecipeFacts:
    schedule: str  # the trick that decides the LR schedule ("one_cycle", ...), or "constant"
    total_steps: int  # optimizer steps of the whole run
    steps_per_epoch: int
    epochs: float
    momentum: float | None  # what the sweep ran at: the schedule's momentum at its LR peak, or the optimizer's
    optimizer: str
    batch_size: int  # global: per device x devices

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def facts_of(run: Run) -> RecipeFacts:
    from trickbag.engine.assemble import base_momentum
    from trickbag.engine.plan import plan_run
    from trickbag.lr_range.sweep import momentum_at_peak

    deciders = [i.plugin_name for i in run.pm.hook.trickbag_lr_schedule.get_hookimpls()
                if i.plugin_name in run.tricks and not i.wrapper and not i.hookwrapper]
    plan = plan_run(run.pm.hook, run.context, run.train.num_batches)
    momentum = momentum_at_peak(run)
    return RecipeFacts(
        schedule=deciders[0] if deciders else "constant",
        total_steps=plan.total_steps,
        steps_per_epoch=run.context.steps_per_epoch,
        epochs=run.recipe.training.epochs,
        momentum=momentum if momentum is not None else base_momentum(run.optimizer),
        optimizer=run.recipe.optimizer.name,
        batch_size=run.context.global_batch_size,
    )
