"""User-facing errors: one clear line and a non-zero exit, never a traceback."""
import functools
import logging
import os
import sys

LOGGER = 'dmin'   # the project's logger (utils/logger.py gives it its handlers)


class UserError(Exception):
    """A problem with the user's input (files, flags, checkpoints) that they can fix.

    The message is one sentence naming the culprit and the fix.
    """


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as shells report a Ctrl-C


def exit_on_user_error(main):
    """Run `main`; a UserError prints 'error: <message>' to stderr and exits with status 2.

    Ctrl-C prints one line (the KeyboardInterrupt's message: how to continue) and exits
    with status 130. Either line also
    goes to a run's train.log when one is open (not to the console twice).
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            stop(f'error: {e}', EXIT_USER_ERROR)
        except KeyboardInterrupt as e:   # its message, where given, says what to do next
            stop(f"interrupted: {e.args[0] if e.args else 'every file written so far is intact'}",
                 EXIT_INTERRUPTED)

    return wrapper


def stop(line, status):
    rank = os.environ.get('RANK', '0')
    if rank != '0':   # under torchrun: say which process stopped
        line = f'[rank {rank}] {line}'
    logger = logging.getLogger(LOGGER)
    if logger.handlers:   # else logging's last resort would print the line a second time
        logger.error(line, extra={'console': False})
    print(line, file=sys.stderr)
    sys.exit(status)
