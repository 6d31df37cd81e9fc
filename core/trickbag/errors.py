"""Errors that reach the user as one line and exit code 2 (bad recipe, option, path, checkpoint)."""


class UserError(Exception):
    """Bad input from the user: the CLI prints ``error: <message>`` and exits with code 2.

    The message must name the culprit (file, key, option, plugin) so no traceback is needed.
    """


class PluginError(Exception):
    """A plugin raised inside a hook; the message names the plugin and the hook."""


def did_you_mean(word: str, choices) -> str:
    """``"; did you mean 'lr'?"`` for the closest of ``choices``, or ``""``: the hint every one-line
    error about an unknown name ends with (recipe keys, tricks, models, data sets, optimizers, hooks)."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
