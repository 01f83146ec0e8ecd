"""One exception type for mistakes a user can fix (bad option, missing file); bugs stay tracebacks."""


class FCNLabError(ValueError):
    """A user-fixable error whose message names the file or option and what to do about it."""
