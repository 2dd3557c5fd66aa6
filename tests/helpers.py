"""Shared pieces of the tests: a small model and running the scripts as a user would."""
import os
import re
import subprocess
import sys
from pathlib import Path

from dataset.layout import AVE, BACKGROUND_NAME

REPO = Path(__file__).resolve().parents[1]
# The AVE release's classes: C event classes, background is label C.
BACKGROUND = AVE.num_classes
LABEL_NAMES = (*AVE.class_names, BACKGROUND_NAME)
# A small DMIN (same parts, narrower) so that the tests run in seconds on 2 cores.
SMALL_MODEL = {'d_model': 32, 'n_heads': 4, 'ff_dim': 64, 'encoder_layers': 1,
               'agta_hidden': 32, 'mfb_factor': 2}
# Training runs of the tests draw no TensorBoard images (matplotlib takes seconds per epoch)
# unless they are what a test is about.
NO_IMAGES = ['--tb_images_every', '0']
SMALL_FLAGS = [f for k, v in SMALL_MODEL.items() for f in (f'--{k}', str(v))] + NO_IMAGES
# Narrower still, for tests that train many runs: their cost is process start and I/O.
TINY_MODEL = {'d_model': 8, 'n_heads': 2, 'ff_dim': 16, 'encoder_layers': 1, 'agta_hidden': 8,
              'mfb_factor': 1, 'fusion_heads': 2}
TINY_FLAGS = [f for k, v in TINY_MODEL.items() for f in (f'--{k}', str(v))] + NO_IMAGES


def build(setting, *flags, spec=AVE, **keys):
    """(config, model, criterion) of `setting` as the program builds them: the config from
    `flags` and `keys`, for data of DataSpec `spec` (the AVE release's by default)."""
    from engine.config import parse_config
    from model import build_criterion, build_model, model_args
    cfg = {**parse_config(setting, list(flags))[0], **keys}
    return (cfg, build_model(model_args(setting, spec, cfg)),
            build_criterion(cfg, setting, spec.num_classes))


def run_script(script, *args, check=True, cwd=REPO):
    """Run a repo shell script with this interpreter (from folder `cwd`); returns the
    CompletedProcess."""
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(['bash', str(REPO / script), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f'{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}')
    return proc


def printed_test_accuracy(stdout):
    return float(re.search(r'test accuracy: ([\d.]+)', stdout).group(1))


def best_checkpoint(folder, task='Supervised'):
    found = list(Path(folder).glob(f'model_epoch_*_top1_*_task_{task}_best_model.pth.tar'))
    assert len(found) == 1, found
    return found[0]




def user_error(capsys, setting, argv):
    """Run the `setting` program on `argv` in this process; return its one error line.

    Asserts what a user must see on a bad input: exit status 2 and exactly one line on
    stderr, 'error: ...'.
    """
    from engine.config import SCRIPTS
    from main import main
    capsys.readouterr()
    try:
        main(setting, [str(a) for a in argv], prog=SCRIPTS[setting].program)
    except SystemExit as e:
        assert e.code == 2, e.code
    else:
        raise AssertionError(f'{argv} did not fail')
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]
