"""The ``trickbag`` command line: the Typer app (``app``) and its progress display (``progress``)."""
