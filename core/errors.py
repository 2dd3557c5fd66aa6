"""User-facing errors: one clear line and a non-zero exit, never a traceback; and Ctrl-C,
which always stops the program."""
import atexit
import contextlib
import functools
import logging
import os
import signal
import sys
import threading

LOGGER = 'dmin'   # the project's logger (engine/logger.py gives it its handlers)


class UserError(Exception):
    """A problem with the user's input (files, flags, checkpoints) that they can fix.

    The message is one sentence naming the culprit and the fix.
    """


class Resumable(UserError):
    """A failure part-way through training (a data worker died, a data file changed, another
    process of the run is gone) after which the run can continue from its last.pth.tar; the
    training loop adds where that is."""


class PeerGone(UserError):
    """Under torchrun: another process of the run is gone (killed, or stopped by its own
    error), so this one cannot go on."""


EXIT_USER_ERROR = 2
EXIT_PEER_GONE = 3       # tools/torchrun.py then names the process that went first
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as shells report a Ctrl-C
# Set by tools/torchrun.py for the processes it starts: a folder where each rank that stops
# leaves its status and line (stopped_<rank>), and rank 0 the path of its run folder.
LAUNCHER_ENV = 'DMIN_LAUNCHER'


def exit_on_user_error(main):
    """Run `main`; a UserError prints 'error: <message>' to stderr and exits with status 2.

    Ctrl-C prints one line (the KeyboardInterrupt's message: how to continue) and exits
    with status 130. Either line also goes to a run's train.log when one is open (not to the
    console twice). A PermissionError nothing else explained is one line naming the file.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        with interrupts():   # a second Ctrl-C while the line is printed changes nothing
            try:
                return main(*args, **kwargs)
            except PeerGone as e:   # under tools/torchrun.py, the launcher says it once
                stop(f'error: {e}', EXIT_PEER_GONE, console=not os.environ.get(LAUNCHER_ENV))
            except UserError as e:
                stop(f'error: {e}', EXIT_USER_ERROR)
            except KeyboardInterrupt as e:   # its message, where given, says what to do next
                _interrupt['pending'] = True
                what = e.args[0] if e.args else 'every file written so far is intact'
                stop(f'interrupted: {what}', EXIT_INTERRUPTED)
            except PermissionError as e:
                stop(f'error: {e.filename or "a file"}: permission denied; give your user '
                     'access to it, or choose another path', EXIT_USER_ERROR)

    return wrapper


# Ctrl-C. Python raises KeyboardInterrupt wherever the main thread is, and where that is a
# finalizer (h5py closing a file, a weakref callback) Python prints "Exception ignored in"
# and goes on. So the handler also remembers the interrupt, and the loops call
# check_interrupt() between steps: a swallowed Ctrl-C stops the program there.
_interrupt = {'pending': False, 'exit_hook': False}


def _no_interrupts_at_exit():
    """Ignore Ctrl-C while the interpreter shuts down: a SIGINT that arrives then (or one
    that arrived during a long native call, e.g. a collective whose peer stopped, and is
    handled only now) has nothing left to stop, and would print a traceback from whichever
    exit handler it lands in."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _on_interrupt(signum, frame):
    if _interrupt['pending']:
        return              # already stopping: the first KeyboardInterrupt is on its way
    _interrupt['pending'] = True
    raise KeyboardInterrupt


def check_interrupt():
    """Raise KeyboardInterrupt if a Ctrl-C came since the program started (and something
    swallowed it)."""
    if _interrupt['pending']:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts():
    """Within the block, Ctrl-C goes through _on_interrupt (main thread, default handler
    only; the previous handler is restored after)."""
    own = (threading.current_thread() is threading.main_thread()
           and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    hook = sys.unraisablehook

    def quiet(unraisable):   # a swallowed Ctrl-C: remembered, raised at the next check
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)

    if own:
        signal.signal(signal.SIGINT, _on_interrupt)
        sys.unraisablehook = quiet
        if not _interrupt['exit_hook']:   # registered after the libraries' exit handlers: runs first
            atexit.register(_no_interrupts_at_exit)
            _interrupt['exit_hook'] = True
    _interrupt['pending'] = False
    try:
        yield
    finally:
        if own:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.unraisablehook = hook
        _interrupt['pending'] = False


def stop(line, status, console=True):
    """Print `line` to stderr (and a run's train.log) and exit with `status`."""
    rank = os.environ.get('RANK', '0')
    if rank != '0':   # under torchrun: say which process stopped
        line = f'[rank {rank}] {line}'
    logger = logging.getLogger(LOGGER)
    if logger.handlers:   # else logging's last resort would print the line a second time
        logger.error(line, extra={'console': False})
    launcher = os.environ.get(LAUNCHER_ENV)
    if launcher and os.path.isdir(launcher):   # tools/torchrun.py reads why each rank stopped
        with open(os.path.join(launcher, f'stopped_{rank}'), 'w') as f:
            f.write(f'{status}\n{line}\n')
    if console:
        print(line, file=sys.stderr)
    sys.exit(status)
