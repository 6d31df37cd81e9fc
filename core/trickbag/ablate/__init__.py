"""``trickbag ablate``: what each trick of a recipe buys, over seeds, with confidence intervals.

``variants`` turns a recipe and a mode into the runs to make; ``runner`` makes them as ordinary run
folders (so ``trickbag run --resume`` works on each, and a rerun skips what is done); ``stats``
turns their results into means, Student-t intervals and seed-paired differences; ``report`` prints
and writes the table.
"""
