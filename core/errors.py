"""Errors that reach the user as one line and exit code 2 (bad recipe, option, path, checkpoint)."""


class UserError(Exception):
    """Bad input from the user: the CLI prints ``error: <message>`` and exits with code 2.

    The message must name the culprit (file, key, option, plugin) so no traceback is needed.
    """


class PluginError(Exception):
    """A plugin raised inside a hook; the message names the plugin and the hook."""
