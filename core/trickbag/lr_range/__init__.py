"""The LR range test: the sweep over the real training step (``sweep``), the rules that read the
curve (``suggest``), the files it leaves (``outputs``) and its terminal report (``report``).

Maths lives in ``sweep`` and ``suggest``; ``outputs`` and ``report`` only present results.
"""
