"""One exception type for every user-facing problem.

The CLI turns an ``RsSegError`` into one clear line and exit code 2; anything else is a bug
and keeps its traceback.
"""


class RsSegError(Exception):
    """A problem the user can fix: bad config, missing file, unreadable image, ..."""
