"""Where a run reports: the console, <run folder>/train.log and TensorBoard."""
import logging
import sys
import time
from pathlib import Path

from core.errors import LOGGER

def setup_logging(log_file=None, quiet=False):
    """The project's logger: messages to stdout and, for a training run, to `log_file`.

    Records logged with extra={'console': False} (the final error line, which goes to
    stderr by itself) reach only the file. `quiet` (torchrun's ranks other than 0) keeps
    only warnings and errors, so that each line is printed once.
    """
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    close_logging()
    logger.propagate = False
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter('%(message)s'))
    console.addFilter(lambda record: getattr(record, 'console', True))
    logger.addHandler(console)
    if log_file is not None:
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
        logger.addHandler(to_file)
    return logger


def close_logging():
    """Detach and close every handler of the project's logger (the log file is released)."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def tensorboard_writer(folder, purge_step):
    """A SummaryWriter of <folder>/tensorboard that drops events from `purge_step` on (those
    of epochs a resumed run repeats). Imported here: it takes a third of a second, which
    runs that stop early or only evaluate need not pay.

    TensorBoard reads a folder's event files in the order of their names, which begin with
    the second each was opened in and go on with a process id and a counter compared as
    text. A file whose name sorts before the folder's last one would be read before it, and
    the repeated epochs it purges would come back; so such a file (opened in the same second
    as the last one) is dropped and opened again once that second is over."""
    from torch.utils.tensorboard import SummaryWriter
    events = Path(folder) / 'tensorboard'
    earlier = [p.name for p in events.glob('events.out.tfevents.*')]
    writer = SummaryWriter(events, purge_step=purge_step)
    name = Path(getattr(writer.file_writer.event_writer, '_file_name', '')).name
    if earlier and not (name and name > max(earlier)):
        writer.close()
        if name:
            (events / name).unlink(missing_ok=True)
        _wait_past_the_second_of(earlier)
        writer = SummaryWriter(events, purge_step=purge_step)
    return writer


MAX_WAIT_S = 2.0   # a file stamped later than that (a clock set back) is not waited for


def _wait_past_the_second_of(names):
    """Sleep until the second after the latest one that event file `names` were opened in."""
    seconds = [int(n.split('.')[3]) for n in names if n.split('.')[3].isdigit()]
    if seconds:
        left = min(max(seconds) + 1 - time.time(), MAX_WAIT_S)
        if left > 0:
            time.sleep(left)


def tensorboard_command(folder):
    """The command that shows `folder` in TensorBoard, typed where the user is: the
    tensorboard beside this Python (the .venv's), paths relative to the current folder
    when inside it, else absolute."""
    def shown(path):
        path, here = Path(path).absolute(), Path.cwd()
        return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)

    executable = Path(sys.executable).parent / 'tensorboard'
    program = shown(executable) if executable.exists() else 'tensorboard'
    return f'{program} --logdir {shown(folder)}'


def log_epoch(writer, log, record, weight_dict):
    """One epoch's losses, accuracies and learning rate: a log line and TensorBoard scalars
    (the loss terms of `weight_dict`, and the training accuracy, where there are such)."""
    epoch, train = record['epoch'], record['train']
    writer.add_scalar('loss/total', train['loss'], epoch)
    for name in weight_dict:
        writer.add_scalar(f'loss/{name}', train[name], epoch)
    for split, value in (('train', train.get('accuracy')), ('val', record['val_accuracy']),
                         ('test', record['test_accuracy'])):
        if value is not None:
            writer.add_scalar(f'accuracy/{split}', value, epoch)
    writer.add_scalar('lr', record['lr'], epoch)
    writer.flush()
    terms = f" ({' '.join(f'{k} {train[k]:.4f}' for k in weight_dict)})" if weight_dict else ''
    trained = f" | train {train['accuracy']:.2f}" if 'accuracy' in train else ''
    log.info(f"epoch {epoch:3d} | lr {record['lr']:.2e} | loss {train['loss']:.4f}{terms}"
             f"{trained} | val {record['val_accuracy']:.2f} | test {record['test_accuracy']:.2f}"
             f" | {record['seconds']:.1f}s")


def log_report_images(writer, reports, epoch):
    """Per-class accuracy bars and the confusion matrix of each split, as TensorBoard images."""
    from reports import plots   # matplotlib loads only when images are wanted
    for split, rep in reports.items():
        bars = plots.per_class_figure(rep['per_class'], rep['accuracy'],
                                      title=f'Per-class accuracy, {split}, epoch {epoch}')
        writer.add_image(f'per_class_accuracy/{split}', plots.to_image(bars), epoch,
                         dataformats='HWC')
        matrix = plots.confusion_figure(rep['confusion'], rep['labels'],
                                        title=f'Confusion matrix, {split}, epoch {epoch}')
        writer.add_image(f'confusion_matrix/{split}', plots.to_image(matrix), epoch,
                         dataformats='HWC')
    writer.flush()
