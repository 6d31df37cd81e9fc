"""Is this epoch's training still sane? Divergence is more than NaN: a finite loss of 1e20 has
diverged too, and its weights must never replace the last good checkpoint."""
from __future__ import annotations

import math
from typing import Any

#: an epoch whose mean training loss exceeds this many times the run's own scale has exploded. The
#: scale is the larger of chance level (ln K for K classes) and the loss of the run's very first
#: step: a healthy run falls below its starting loss, while a loss wrapper or a regulariser that
#: makes every loss large moves the scale with it
EXPLOSION = 10.0
#: validation accuracy within this factor of 1/K counts as chance level
CHANCE = 1.5


def explosion(train_loss: float, val_loss: float | None, num_classes: int, first_loss: float) -> str | None:
    """Why this epoch has diverged, or None. ``first_loss``: the loss of the run's first step."""
    if not math.isfinite(train_loss):
        return f"training loss is {train_loss}"
    if val_loss is not None and not math.isfinite(val_loss):
        return f"validation loss is {val_loss}"
    chance = math.log(max(num_classes, 2))
    scale = max(chance, first_loss) if math.isfinite(first_loss) else chance
    if train_loss > EXPLOSION * scale:
        return (f"training loss {train_loss:.3g} is over {EXPLOSION:g} times the run's scale "
                f"(the larger of its first loss {first_loss:.3g} and chance level ln {num_classes} = {chance:.3g})")
    return None


def at_chance(val_acc: float, num_classes: int) -> bool:
    return val_acc <= CHANCE / max(num_classes, 2)


def chance_warning(history: list[dict[str, Any]], num_classes: int) -> str | None:
    """A line for a run that ended at chance level (it exits 0: the loss was finite all along)."""
    if history and at_chance(history[-1]["val_acc"], num_classes):
        return (f"the run ended at chance level (val_acc {history[-1]['val_acc']:.3f}, chance {1 / num_classes:.3f}): "
                "its learning rate may be far too high or too low; try  trickbag lr-find")
    return None
