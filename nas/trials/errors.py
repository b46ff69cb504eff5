"""The error every job's run raises when it cannot start or go on (the search's and the ablation's are kinds of it)."""


class RunError(ValueError):
    """A run that cannot start or go on; the message says what to change."""
