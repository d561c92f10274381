"""The one exception type for mistakes a user can fix (bad task, missing data, no network, ...)."""


class LoraNbError(Exception):
    """A problem with the user's input or environment; the message names the fix."""


class LoraNbWarning(UserWarning):
    """Something that works but is probably not what the user meant (e.g. a run declared twice in a grid)."""
