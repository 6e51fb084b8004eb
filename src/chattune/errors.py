"""User-facing errors. Owns the one exception type the CLI turns into a single line and exit code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad config key, bad data line, missing file).

    The message is one line per problem, naming the place (file:line or key path) and the fix.
    The CLI prints it without a traceback and exits with code 2.
    """
