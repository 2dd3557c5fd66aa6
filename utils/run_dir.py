"""The run folder (--snapshot_pref): never silently reused, checked writable up front."""
import shutil
from pathlib import Path

from utils.checkpoint import LAST
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
# What a run writes; --overwrite deletes exactly these and nothing else of the folder.
RUN_FILES = ('config.yaml', 'metrics.json', 'train.log', LAST)
RUN_DIRS = ('tensorboard', 'code')
BEST_GLOB = 'model_epoch_*_best_model.pth.tar'
SOURCE_GLOBS = ('*.py', '*.sh', '*.md', 'requirements.txt', 'configs/*.yaml', 'dataset/*.py',
                'model/*.py', 'utils/*.py', 'tools/*.py')


def holds_run(folder):
    return any((folder / f).exists() for f in RUN_FILES) or any(folder.glob(BEST_GLOB))


def prepare_run_dir(folder, resuming, overwrite):
    """Create `folder` for a new run (or reuse it for --resume); refuse to clobber a run."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f'--snapshot_pref {folder} is a file, not a folder; choose another path')
    if not resuming and folder.is_dir() and holds_run(folder):
        if not overwrite:
            raise UserError(f'--snapshot_pref {folder} already holds a run; continue it with '
                            f'--resume {folder / LAST}, start afresh with --overwrite, or choose '
                            'another --snapshot_pref')
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
    return folder


def copy_source(folder):
    """Copy the code that ran into <folder>/code, as the original release promised."""
    dest = folder / 'code'
    for pattern in SOURCE_GLOBS:
        for src in REPO.glob(pattern):
            target = dest / src.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
