"""``python -m trickbag`` is the same as the ``trickbag`` command."""
from trickbag.cli import main

main()
