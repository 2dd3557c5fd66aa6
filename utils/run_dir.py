"""The run folder (--snapshot_pref): never silently reused, checked writable up front, and
left as it was by a start that fails before training."""
import contextlib
import shutil
from pathlib import Path

from core.atomic import atomic_write, temp_files
from core.errors import UserError
from utils.checkpoint import BEST_GLOB, LAST
from utils.logger import close_logging

REPO = Path(__file__).resolve().parents[1]
# What a run writes; --overwrite deletes exactly these and nothing else of the folder.
RUN_FILES = ('config.yaml', 'metrics.json', 'train.log', 'report.json', 'report.md', LAST)
RUN_DIRS = ('tensorboard', 'code')
SOURCE_GLOBS = ('*.py', '*.sh', '*.md', 'requirements.txt', 'configs/*.yaml', 'dataset/*.py',
                'model/*.py', 'utils/*.py', 'tools/*.py')


def holds_run(folder):
    """True once a run in `folder` has finished an epoch: then it has results to protect.

    A start that failed before its first epoch (bad data, Ctrl-C) leaves only a log and
    the config, and the next start may reuse the folder.
    """
    return ((folder / LAST).exists() or (folder / 'metrics.json').exists()
            or any(folder.glob(BEST_GLOB)))


def prepare_run_dir(folder, resume=None, overwrite=False):
    """Create `folder` for a new run, or reuse it to continue the checkpoint `resume` it holds.

    A folder holding another run is refused unless `overwrite`, which clears that run first.
    Temporary files that a killed run left behind are deleted. Returns (folder, new): new
    is True when this call created the folder.
    """
    folder = Path(folder)
    new = not folder.exists()
    if folder.exists() and not folder.is_dir():
        raise UserError(f'--snapshot_pref {folder} is a file, not a folder; choose another path')
    continuing = resume is not None and Path(resume).parent.resolve() == folder.resolve()
    if not continuing and folder.is_dir() and holds_run(folder):
        if not overwrite:
            raise UserError(refusal(folder, resume))
        for f in RUN_FILES:
            (folder / f).unlink(missing_ok=True)
        for f in folder.glob(BEST_GLOB):
            f.unlink()
        for d in RUN_DIRS:
            shutil.rmtree(folder / d, ignore_errors=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / '.write_test'
        probe.write_bytes(b'')
        probe.unlink()
    except OSError as e:
        raise UserError(f'--snapshot_pref {folder} is not writable ({e.strerror}); choose a '
                        'folder you can write to')
    for name in RUN_FILES + (BEST_GLOB,):
        for tmp in temp_files(folder, name):
            tmp.unlink()
    return folder, new


@contextlib.contextmanager
def removed_on_failure(folder, new, resuming):
    """Within the block, a failure (a bad data file, Ctrl-C) removes what this start wrote
    to run folder `folder`, and the folder itself if it is `new`, so that a run that never
    trained leaves nothing behind. The folder of the run being resumed is left as it is."""
    try:
        yield
    except BaseException:
        if new or not resuming:
            close_logging()   # release train.log before deleting it
            for f in RUN_FILES:
                (folder / f).unlink(missing_ok=True)
            for d in RUN_DIRS:
                shutil.rmtree(folder / d, ignore_errors=True)
            if new:
                with contextlib.suppress(OSError):   # not empty: something else is there
                    folder.rmdir()
        raise


def keep_best(folder, keep, source):
    """Leave `keep` as the only best checkpoint in `folder` when resuming a run from `source`.

    Deletes the best checkpoints a killed run wrote after the state being resumed, and
    copies `keep` over from `source` when the run continues in another folder.
    """
    for path in folder.glob(BEST_GLOB):
        if path.name != keep:
            path.unlink()
    if keep and not (folder / keep).exists() and (source / keep).is_file():
        with open(source / keep, 'rb') as src:
            atomic_write(folder / keep, lambda f: shutil.copyfileobj(src, f))


def refusal(folder, resume):
    """The message refusing to start in `folder`, which holds a run: what to do instead."""
    if resume is not None:
        return (f'--snapshot_pref {folder} already holds another run; resume {resume} into an '
                'empty folder, or pass --overwrite to delete that run first')
    if (folder / LAST).exists():
        return (f'--snapshot_pref {folder} already holds a run; continue it with --resume '
                f'{folder / LAST}, start afresh with --overwrite, or choose another --snapshot_pref')
    return (f'--snapshot_pref {folder} holds a run that stopped before saving {LAST}, so it '
            'cannot be resumed; start afresh with --overwrite, or choose another --snapshot_pref')


def copy_source(folder):
    """Copy the code that ran into <folder>/code, as the original release promised."""
    dest = folder / 'code'
    for pattern in SOURCE_GLOBS:
        for src in REPO.glob(pattern):
            target = dest / src.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
