"""The run folder (--snapshot_pref): locked for its run, never silently reused, checked
writable up front, left as it was by a start that fails before training, and written at
the end of every epoch in the one crash-safe order (save_epoch)."""
import contextlib
import shutil
from pathlib import Path

from core.atomic import atomic_write, temp_files, write_error, write_json
from core.errors import PeerGone, Resumable, UserError
from core.lock import hold
from engine import distributed as dist
from engine.checkpoint import (BEST_GLOB, LAST, WEIGHT_FIELDS, best_name, is_best_name,
                               load_resumable, save_checkpoint, task_of)
from engine.config import resume_config
from engine.logger import close_logging, setup_logging

REPO = Path(__file__).resolve().parents[1]


def start_or_resume(setting, cfg, run, explicit):
    """(the --resume checkpoint's state, or None for a new run; the run's config: the
    checkpoint's with what may change now). The config is None when the checkpoint has
    done its --n_epoch epochs already: nothing to train, which is said in one line."""
    state = load_resumable(run['resume'], setting) if run['resume'] else None
    if state is not None:
        cfg = resume_config(state['config'], cfg, explicit, run['resume'], setting)
    done = state['epoch'] if state else 0
    if cfg['n_epoch'] <= done:
        setup_logging().info(f"nothing to train: --n_epoch {cfg['n_epoch']} and {done} epochs "
                             'done; nothing was written')
        return state, None
    return state, cfg
# What a run writes; --overwrite deletes exactly these and nothing else of the folder.
RUN_FILES = ('config.yaml', 'metrics.json', 'train.log', 'report.json', 'report.md', LAST)
RUN_DIRS = ('tensorboard', 'code')
LOCK = '.lock'   # holds the PID of the run that has the folder; flock'ed while it runs
SOURCE_GLOBS = ('*.py', '*.sh', '*.md', 'requirements.txt', 'configs/*.yaml', 'core/*.py',
                'dataset/*.py', 'features/*.py', 'model/*.py', 'engine/*.py', 'reports/*.py',
                'tools/*.py', 'tools/*.sh')
_held = {}   # the lock this process holds: one run folder at a time


def holds_run(folder):
    """True once a run in `folder` has finished an epoch: then it has results to protect.

    A start that failed before its first epoch (bad data, Ctrl-C) leaves only a log and
    the config, and the next start may reuse the folder.
    """
    return ((folder / LAST).exists() or (folder / 'metrics.json').exists()
            or any(folder.glob(BEST_GLOB)))


def prepare_run_dir(folder, resume=None, overwrite=False):
    """Create and lock `folder` for a new run, or reuse it to continue the checkpoint
    `resume` it holds.

    Another process's run in the folder is refused (naming its PID). A folder holding
    another run is refused unless `overwrite`, which clears that run first. Temporary files
    that a killed run left behind are deleted. Returns (folder, new): new is True when this
    call created the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f'--snapshot_pref {folder} is a file, not a folder; choose another path')
    new = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / '.write_test'
        probe.write_bytes(b'')
        probe.unlink()
    except OSError as e:
        raise UserError(f'--snapshot_pref {folder} is not writable ({e.strerror}); choose a '
                        'folder you can write to') from None
    lock(folder)
    check_names(folder)
    continuing = resume is not None and Path(resume).parent.resolve() == folder.resolve()
    if not continuing and holds_run(folder):
        if not overwrite:
            raise UserError(refusal(folder, resume))
        for f in RUN_FILES:
            (folder / f).unlink(missing_ok=True)
        for f in folder.glob(BEST_GLOB):
            f.unlink()
        for d in RUN_DIRS:
            shutil.rmtree(folder / d, ignore_errors=True)
    for name in RUN_FILES + (BEST_GLOB,):
        for tmp in temp_files(folder, name):
            tmp.unlink()
    return folder, new


def lock(folder):
    """Hold an exclusive lock on `folder` until the process ends or locks another folder.

    The lock is the kernel's (flock), so it dies with its process: a run killed with
    kill -9 leaves no stale lock behind. A folder locked by another process is refused."""
    release_lock()
    _held['lock'] = hold(folder / LOCK, f'--snapshot_pref {folder} is in use by another run '
                         '(PID {pid}); wait for it to end, or choose another --snapshot_pref')


def release_lock():
    f = _held.pop('lock', None)
    if f is not None:
        f.close()   # closing the file releases the flock


def check_names(folder):
    """Refuse a folder where something other than a file stands at the name of a file the
    run writes (or the other way round): deleting or replacing it would fail half-way."""
    odd = [p for p in (*(folder / f for f in RUN_FILES), *folder.glob(BEST_GLOB))
           if p.exists() and not p.is_file()]
    odd += [folder / d for d in RUN_DIRS if (folder / d).exists() and not (folder / d).is_dir()]
    if odd:
        raise UserError(f'--snapshot_pref {folder} holds {odd[0].name}, which is not what a run '
                        'writes under that name (a folder for a file or a file for a folder); '
                        'move it away or choose another --snapshot_pref')


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
            release_lock()
            (folder / LOCK).unlink(missing_ok=True)
            if new:
                with contextlib.suppress(OSError):   # not empty: something else is there
                    folder.rmdir()
        raise


@contextlib.contextmanager
def interrupted(folder):
    """A Ctrl-C inside the block, or a failure after which the run can go on (a data worker
    died, a data file changed, another process of the run is gone), says what the run folder
    holds and how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(resume_hint(folder)) from None
    except Resumable as e:
        raise UserError(f'{e}; {resume_hint(folder)}') from None
    except RuntimeError as e:
        if not dist.peer_gone(e):
            raise
        raise PeerGone(f'another process of this run stopped '
                            f'({dist.transport_reason(e)}); {resume_hint(folder)}') from None


def resume_hint(folder):
    """How to go on after the run in `folder` stopped part-way."""
    last = folder / LAST
    if last.is_file():
        return f'the finished epochs are in {last}; continue with --resume {last}'
    return ('no epoch had finished, so there is nothing to resume; run the same command again '
            'to start afresh')


def restore_best(folder, best, state, source, log):
    """The best epoch of resumed checkpoint `state` (from folder `source`), its file kept in
    run folder `folder`. A best checkpoint found in neither folder is written again from
    `state` when that is the best epoch; otherwise the run says so and names no file
    (metrics.json's best_checkpoint is null) until a later epoch is better."""
    name = best['checkpoint']
    if name is None or keep_best(folder, name, source):
        return best
    if best['epoch'] == state['epoch']:
        save_checkpoint({**{k: state[k] for k in WEIGHT_FIELDS},
                         'val_accuracy': best['val_accuracy'],
                         'test_accuracy': best['test_accuracy']}, folder / name)
        log.warning(f'warning: the best checkpoint {name} was missing; written again from '
                    f"{LAST} (epoch {state['epoch']}, the best epoch)")
        return best
    log.warning(f"warning: the best checkpoint {name} (epoch {best['epoch']}) is in neither "
                f'{folder} nor {source}; its weights are lost, so no best checkpoint is named '
                'until a later epoch does better')
    return {**best, 'checkpoint': None}


def keep_best(folder, keep, source):
    """Leave `keep` as the only best checkpoint in `folder` when resuming a run from `source`;
    returns whether `keep` is there.

    Deletes the best checkpoints a killed run wrote after the state being resumed, and
    copies `keep` over from `source` when the run continues in another folder. `keep` is a
    name read from a checkpoint: only a name best_name gives is acted on.
    """
    for path in folder.glob(BEST_GLOB):
        if path.name != keep:
            remove_best(folder, path.name)
    if not is_best_name(keep):
        return False
    copy = source / keep
    if not (folder / keep).exists() and copy.is_file() and not copy.is_symlink():
        atomic_write(folder / keep, copy.read_bytes())
    return (folder / keep).is_file()


# The best epoch of a run before its first epoch.
NO_BEST = {'epoch': 0, 'selected': None, 'val_accuracy': None, 'test_accuracy': None,
           'checkpoint': None}


def save_epoch(folder, setting, cfg, weights, training, history, best, write_report, summary):
    """Write what ends epoch history[-1] into run folder `folder`, in the one order that a
    kill at any moment leaves consistent: the best checkpoint (if this epoch is the best so
    far) and its report, then last.pth.tar, which names it, then the removal of the
    previous best checkpoint, then metrics.json. Returns the best epoch after this one.

    `weights`: what every checkpoint holds (checkpoint.WEIGHT_FIELDS); `training`: what
    last.pth.tar adds but the best epoch and the history; `write_report(folder, header)`
    writes the epoch's report files ({setting, epoch, checkpoint, select_on} in `header`);
    `summary(best)` is metrics.json's content."""
    record, previous = history[-1], best['checkpoint']
    select_on = cfg.get('select_on', 'val')
    selected = record[f'{select_on}_accuracy']
    accuracies = {'val_accuracy': record['val_accuracy'], 'test_accuracy': record['test_accuracy']}
    if best['selected'] is None or selected > best['selected']:
        name = best_name(record['epoch'], selected, task_of(setting, cfg))
        save_checkpoint({**weights, **accuracies}, folder / name)
        best = {'epoch': record['epoch'], 'selected': selected, **accuracies, 'checkpoint': name}
        write_report(folder, {'setting': setting, 'epoch': record['epoch'], 'checkpoint': name,
                              'select_on': select_on})
    save_checkpoint({**weights, **training, 'best': best, 'history': history}, folder / LAST)
    if previous and previous != best['checkpoint']:
        remove_best(folder, previous)
    write_json(folder / 'metrics.json', summary(best))
    return best


def remove_best(folder, name):
    """Delete the best checkpoint `name` of run folder `folder`. A name that best_name does
    not give (a forged '../../file', say) is left alone: a run deletes only its own files."""
    if is_best_name(name):
        (folder / name).unlink(missing_ok=True)


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
    """Copy the program's code (what SOURCE_GLOBS names) into <folder>/code, as the original
    release promised; a failed copy (a full disk) is one line, like a checkpoint write."""
    dest = folder / 'code'
    for pattern in SOURCE_GLOBS:
        for src in REPO.glob(pattern):
            target = dest / src.relative_to(REPO)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
            except OSError as e:
                raise write_error(target, e, src.stat().st_size) from None
