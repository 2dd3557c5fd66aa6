"""The program: flags in, a method (DMIN by default) trained or evaluated, results out.

supv_main.py and weak_main.py call main(setting). It reads top to bottom: parse the
config, prepare the run folder, load the data, build the model and the criterion from the
data's DataSpec, then train epoch by epoch (evaluating val and test, keeping the best epoch,
saving checkpoints) or only evaluate a checkpoint. The pieces live below it: engine/ (the
loop, checkpoints, the run folder, config, devices, processes, logging) and reports/.

Started by torchrun (`torchrun --nproc_per_node N supv_main.py ...`), every process runs
this same program on its part of each batch (engine/distributed.py); only rank 0 writes
the run folder: checkpoints, logs, TensorBoard and metrics.
"""
import contextlib
import time
from pathlib import Path

import torch

from core.atomic import write_text
from core.errors import UserError, check_interrupt, exit_on_user_error
from dataset.ave import load_ave
from dataset.layout import BACKGROUND_NAME
from engine import distributed as dist
from engine.checkpoint import (check_setting, dropout_state, load_checkpoint, model_for,
                               restore_training, rng_state, seed_everything, seed_rank)
from engine.config import dump_config, evaluation_config, parse_config
from engine.device import (allocation_errors, configure_torch, free_memory, keep_freed_memory,
                           resolve_device)
from engine.logger import (log_epoch, log_report_images, setup_logging, tensorboard_command,
                           tensorboard_writer)
from engine.loop import build_optimizer, evaluate, train_one_epoch
from engine.memory import release_freed_memory
from engine.run_dir import (NO_BEST, copy_source, interrupted, prepare_run_dir,
                            removed_on_failure, restore_best, save_epoch, start_or_resume)
from model import build_criterion, build_model, count_parameters, method_name, model_args
from reports.metrics import event_summary, report
from reports.report import (majority_baseline, make_folder, run_summary, write_report,
                            write_report_with_figures)


@exit_on_user_error
def main(setting, argv=None, prog=None):
    """Run the command line of `setting` ('supervised' or 'weak'); returns the metrics."""
    cfg, run, explicit = parse_config(setting, argv, prog)
    if run['report'] and not run['evaluate']:
        raise UserError('--report goes with --evaluate; a training run writes report.json and '
                        'report.md of its best epoch to its run folder by itself')
    try:
        if run['evaluate']:
            return evaluate_checkpoint(setting, cfg, run, explicit)
        return train(setting, cfg, run, explicit)
    finally:
        dist.cleanup()


def load_data(cfg, splits, setting, device, log, background=False):
    """load_ave with the config's choices; logs whether the features are in memory or
    streamed, and why."""
    dtype = getattr(torch, cfg['feature_dtype'])
    free = free_memory(device)
    if free is not None and device.type == 'cpu':
        free //= dist.local_world()      # the processes of this machine share its memory
    data = load_ave(cfg['data_root'], splits, setting, background=background, device=device,
                    feature_dtype=dtype, progress=cfg['progress'] and dist.rank() == 0,
                    in_memory=cfg['data_in_memory'], memory_budget=free,
                    workers=cfg['num_workers'], prefetch=cfg['prefetch'])
    # The workers are forked from a process that may keep its freed memory (--reuse_memory);
    # they only pass batches on, and give back what they free.
    data.worker_init = release_freed_memory
    check_interrupt()   # a Ctrl-C that a finalizer swallowed while the files were read
    workers = cfg['num_workers']
    where = ('in memory' if data.in_memory else 'streamed from the files ' + (
        f"by {workers} worker process{'es' if workers > 1 else ''}" if workers else
        'by the training process'))
    why = data.memory_reason.replace('asked for', '--data_in_memory')
    log.info(f"features: {data.feature_bytes / 2 ** 30:.2f} GiB as {cfg['feature_dtype']}, "
             f'{where} ({why}; {data.spec.num_classes} classes, {data.spec.num_segments} '
             'segments per video)')
    return data


def note_data_root(log, saved, cfg, explicit):
    """A checkpoint never chooses the data folder (nor any path): say so when the one it
    was trained on is not the one used now by default."""
    trained_on = saved.get('data_root')
    if 'data_root' not in explicit and trained_on not in (None, cfg['data_root']):
        log.info(f"data: --data_root {cfg['data_root']} (the default; the checkpoint was "
                 f'trained on {trained_on!r}, but paths are never taken from a checkpoint: '
                 'pass --data_root to choose)')


def evaluate_checkpoint(setting, cfg, run, explicit):
    """Evaluate the --resume checkpoint on the test split and print its accuracy."""
    path = run['resume']
    log = setup_logging(quiet=dist.launched() and dist.rank() > 0)
    state = load_checkpoint(path)
    check_setting(state, setting, path)
    cfg = evaluation_config(state['config'], cfg, explicit, path, setting)
    configure_torch(cfg)
    device = dist.setup(resolve_device(cfg['device']))
    note_data_root(log, state['config'], cfg, explicit)
    data = load_data(cfg, ('test',), setting, device, log)
    model, names = model_for(state, path, data.spec)
    model.to(device)
    keep_freed_memory(cfg, device)

    with allocation_errors('--eval_batch_size'):
        preds = evaluate(model, data, 'test', cfg, cfg['progress'])
    rep = report(data.segment[data.splits['test']], preds, names)
    log.info(f'checkpoint {path} ({method_name(model)}, epoch {state["epoch"]}) on '
             f'{data.num_videos("test")} test videos')
    log.info(f"test accuracy: {rep['accuracy']:.3f}")
    log.info(event_summary(rep))
    if run['report'] and dist.rank() == 0:
        folder = make_folder(run['report'], '--report')
        write_report_with_figures(folder, {'test': rep}, {
            'setting': setting, 'method': method_name(model), 'epoch': state['epoch'],
            'checkpoint': str(path)}, 'test split')
        log.info(f"report: {folder / 'report.md'} (with report.json, confusion_matrix.png, "
                 'per_class_accuracy.png)')
    return {'test_accuracy': rep['accuracy'], 'epoch': state['epoch']}


def train(setting, cfg, run, explicit):
    """Train (or, with --resume, continue) a run; returns metrics.json's content."""
    state, cfg = start_or_resume(setting, cfg, run, explicit)
    if cfg is None:
        return None
    configure_torch(cfg)
    device = dist.setup(resolve_device(cfg['device']))
    writes = dist.rank() == 0            # rank 0 alone writes the run folder
    folder, new = (prepare_run_dir(cfg['snapshot_pref'], run['resume'], run['overwrite'])
                   if writes else (Path(cfg['snapshot_pref']), False))
    dist.tell_launcher(folder)
    progress = cfg['progress'] and writes

    with (removed_on_failure(folder, new, resuming=state is not None) if writes
          else contextlib.nullcontext()):
        log = setup_logging(folder / 'train.log' if writes else None, quiet=not writes)
        seed_everything(cfg['seed'])
        generator = torch.Generator().manual_seed(cfg['seed'])   # the order of training videos
        if state is not None:
            note_data_root(log, state['config'], cfg, explicit)
        data = load_data(cfg, ('train', 'val', 'test'), setting, device, log,
                         background=cfg.get('background', False))
        label, baseline = majority_baseline(data)
        net, names = build_net(setting, cfg, data, state, run['resume'], device)
        criterion = build_criterion(cfg, setting, data.spec.num_classes)
        optimizer, scheduler = build_optimizer(net, cfg, device)
        best, history, start = NO_BEST, [], 1
        if state is not None:
            best, history, start = restore_training(state, run['resume'], optimizer, scheduler,
                                                    generator, device, cfg['seed'])
            if writes:
                best = restore_best(folder, best, state, Path(run['resume']).parent, log)
            log.info(f"resuming {run['resume']} at epoch {start}")
        else:
            seed_rank(cfg['seed'], dist.rank())
            if writes:
                copy_source(folder)
        if writes:
            write_text(folder / 'config.yaml', dump_config(cfg))
        model = dist.wrap(net, device)   # under torchrun: DDP, which averages the gradients
        keep_freed_memory(cfg, device)
        log.info(f'{setting} {method_name(net)}: {count_parameters(net):,} parameters, device '
                 f'{device}{dist.describe(cfg["batch_size"])}, {data.num_videos("train")} train / '
                 f"{data.num_videos('val')} val / {data.num_videos('test')} test videos, run "
                 f'folder {folder}')

    writer = tensorboard_writer(folder, purge_step=start) if writes else None
    with interrupted(folder), allocation_errors('--batch_size, --eval_batch_size or the widths'):
        for epoch in range(start, cfg['n_epoch'] + 1):
            began = time.perf_counter()
            lr = optimizer.param_groups[0]['lr']
            stats = train_one_epoch(model, criterion, data, optimizer, epoch, cfg, generator,
                                    progress)
            scheduler.step()
            train_seconds = time.perf_counter() - began
            preds = {s: evaluate(net, data, s, cfg, progress) for s in ('val', 'test')}
            # Every rank's dropout state (a collective: all ranks take part), for resuming.
            rank_states = dist.gather_tensors(dropout_state(device), device)
            if not writes:
                continue
            reports = {s: report(data.segment[data.splits[s]], p, names) for s, p in preds.items()}
            history.append({'epoch': epoch, 'lr': lr, 'train': stats,
                            'val_accuracy': reports['val']['accuracy'],
                            'test_accuracy': reports['test']['accuracy'],
                            'train_seconds': train_seconds, 'train_videos': data.num_videos('train'),
                            'seconds': time.perf_counter() - began})
            # TensorBoard first: a run killed after saving last.pth.tar must not lose the epoch's
            # events (a resumed run purges any events of the epochs it repeats).
            log_epoch(writer, log, history[-1], criterion.weight_dict)
            if cfg['tb_images_every'] and (epoch % cfg['tb_images_every'] == 0
                                           or epoch == cfg['n_epoch']):
                log_report_images(writer, reports, epoch)
            weights = {'setting': setting, 'epoch': epoch, 'model': net.state_dict(),
                       'model_args': net.args, 'data': names_spec(data, names), 'config': cfg}
            training = {'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict(),
                        'rng': rng_state(generator, rank_states)}
            best = save_epoch(
                folder, setting, cfg, weights, training, history, best,
                lambda folder, header: write_report(folder, reports,
                                                    {**header, 'method': method_name(net)}),
                lambda best: run_summary(setting, cfg, best, history, baseline))
    if not writes:
        return None
    writer.close()
    log_result(log, cfg, best, baseline, names[label], folder)
    return run_summary(setting, cfg, best, history, baseline)


def build_net(setting, cfg, data, state, path, device):
    """(the model on `device`, label names): a new one for the data's spec, or checkpoint
    `state`'s (at `path`), which names the classes."""
    with allocation_errors('--d_model, --ff_dim, --agta_hidden or --mfb_factor'):
        if state is not None:
            net, names = model_for(state, path, data.spec)
        else:
            net = build_model(model_args(setting, data.spec, cfg))
            names = (*data.spec.class_names, BACKGROUND_NAME)
        return net.to(device), names


def names_spec(data, names):
    """What checkpoints record of the data: the data's spec, named with `names` (a resumed
    run keeps its checkpoint's)."""
    return {**data.spec.to_dict(), 'class_names': list(names[:-1])}


def log_result(log, cfg, best, baseline, majority, folder):
    if best['epoch']:
        log.info(f"best epoch {best['epoch']} (selected on {cfg['select_on']}): val accuracy "
                 f"{best['val_accuracy']:.3f}, test accuracy {best['test_accuracy']:.3f}")
        log.info(f"majority-class baseline (every segment '{majority}'): val "
                 f"{baseline['val_accuracy']:.3f}, test {baseline['test_accuracy']:.3f}")
        log.info(f"checkpoint: {folder / best['checkpoint']}" if best['checkpoint'] else
                 f"checkpoint: none (the file of epoch {best['epoch']} is missing)")
    log.info(f'TensorBoard: {tensorboard_command(folder)}')
