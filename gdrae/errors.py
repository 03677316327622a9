"""The one error type users see.

Library code raises :class:`GdraeError` for every problem with user input
(a file, a cache, a config value, a checkpoint). Its message is one line that
names the file or key and says "expected X, got Y" where that fits. The
command-line layer turns it into a one-line message and a non-zero exit.
"""


class GdraeError(ValueError):
    """A problem with user input, described in one line naming the file or key."""
