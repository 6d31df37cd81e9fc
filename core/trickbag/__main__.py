"""``python -m trickbag`` is the same as the ``trickbag`` command."""
from trickbag.cli.app import main

main()
