"""User-facing errors: one clear line and a non-zero exit, never a traceback."""
import functools
import logging
import sys


class UserError(Exception):
    """A problem with the user's input (files, flags, checkpoints) that they can fix.

    The message is one sentence naming the culprit and the fix.
    """


EXIT_USER_ERROR = 2


def exit_on_user_error(main):
    """Run `main`; a UserError prints 'error: <message>' to stderr and exits with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            logging.getLogger('dmin').debug('stopped: %s', e)
            print(f'error: {e}', file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapper
