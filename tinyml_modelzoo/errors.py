"""The one exception type the command line shows without a traceback."""


class UserError(Exception):
    """Bad config, bad data or an impossible request.

    The message must name the file, key or sample, say what is wrong and how to
    fix it. The CLI prints it and exits with status 2.
    """
