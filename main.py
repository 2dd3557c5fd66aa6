"""The program: flags in, DMIN trained or evaluated, results out.

supv_main.py and weak_main.py call main(setting). It reads top to bottom: parse the
config, prepare the run folder, load the data, build the model and the criterion from
the data's sizes, then train epoch by epoch (evaluating val and test, keeping the best
epoch, saving checkpoints) or only evaluate a checkpoint. The pieces live below it:
utils/engine.py (the loops), utils/checkpoint.py, utils/report.py, utils/logger.py.

Started by torchrun (`torchrun --nproc_per_node N supv_main.py ...`), every process runs
this same program on its part of each batch (utils/distributed.py); only rank 0 writes
the run folder: checkpoints, logs, TensorBoard and metrics.
"""
import contextlib
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from core.atomic import write_json, write_text
from core.errors import UserError, check_interrupt, exit_on_user_error
from dataset.ave import feature_bytes, load_ave
from dataset.layout import BACKGROUND_NAME
from model import build_criterion, build_model, count_parameters, model_args
from utils import distributed as dist
from utils.checkpoint import (LAST, TRAINING_FIELDS, WEIGHT_FIELDS, best_name, check_data,
                              check_fields, check_setting, check_training_state, damaged_state,
                              dropout_state, load_checkpoint, model_from_checkpoint,
                              restore_rng_state, rng_state, save_checkpoint, seed_everything,
                              seed_rank)
from utils.config import EVAL_OVERRIDABLE, dump_config, parse_config, resume_config, with_saved
from utils.device import (allocation_errors, configure_torch, free_memory, keep_freed_memory,
                          resolve_device)
from utils.engine import evaluate, train_one_epoch
from utils.memory import release_freed_memory
from utils.logger import (log_epoch, log_report_images, setup_logging, tensorboard_command,
                          tensorboard_writer)
from utils.metrics import event_summary, report
from utils.report import (majority_baseline, make_folder, run_summary, write_report,
                          write_report_with_figures)
from utils.run_dir import (copy_source, interrupted, keep_best, prepare_run_dir, remove_best,
                           removed_on_failure)


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
                    in_memory=cfg['data_in_memory'] if cfg['data_in_memory'] == 'auto'
                    else cfg['data_in_memory'] == 'true',
                    memory_budget=free, workers=cfg['num_workers'], prefetch=cfg['prefetch'])
    # The workers are forked from a process that may keep its freed memory (--reuse_memory);
    # they only pass batches on, and give back what they free.
    data.worker_init = release_freed_memory
    check_interrupt()   # a Ctrl-C that a finalizer swallowed while the files were read
    size = feature_bytes(len(data.source_rows), data.shapes, dtype) / 2 ** 30
    workers = cfg['num_workers']
    where = ('in memory' if data.in_memory else 'streamed from the files ' + (
        f"by {workers} worker process{'es' if workers > 1 else ''}" if workers else
        'by the training process'))
    why = (f'--data_in_memory {cfg["data_in_memory"]}' if cfg['data_in_memory'] != 'auto' else
           f'auto: {free / 2 ** 30:.1f} GiB free' if free is not None else 'auto')
    log.info(f"features: {size:.2f} GiB as {cfg['feature_dtype']}, {where} ({why}; "
             f"{data.num_classes} classes, {data.shapes['num_segments']} segments per video)")
    return data


def note_data_root(log, saved, cfg, explicit):
    """A checkpoint never chooses the data folder (nor any path): say so when the one it
    was trained on is not the one used now by default."""
    trained_on = saved.get('data_root')
    if 'data_root' not in explicit and trained_on not in (None, cfg['data_root']):
        log.info(f"data: --data_root {cfg['data_root']} (the default; the checkpoint was "
                 f'trained on {trained_on!r}, but paths are never taken from a checkpoint: '
                 'pass --data_root to choose)')


def restore_best(folder, best, state, source, log):
    """The best epoch of resumed checkpoint `state` (from folder `source`), its file kept in
    run folder `folder`. A best checkpoint found in neither folder is written again from
    `state` when that is the best epoch; otherwise the run says so and names no file
    (metrics.json's best_checkpoint is null) until a later epoch is better."""
    name = best['checkpoint']
    if name is None or keep_best(folder, name, source):
        return best
    if best['epoch'] == state['epoch']:
        save_checkpoint({**{k: state[k] for k in WEIGHT_FIELDS if k in state},
                         'val_accuracy': best['val_accuracy'],
                         'test_accuracy': best['test_accuracy']}, folder / name)
        log.warning(f'warning: the best checkpoint {name} was missing; written again from '
                    f"{LAST} (epoch {state['epoch']}, the best epoch)")
        return best
    log.warning(f"warning: the best checkpoint {name} (epoch {best['epoch']}) is in neither "
                f'{folder} nor {source}; its weights are lost, so no best checkpoint is named '
                'until a later epoch does better')
    return {**best, 'checkpoint': None}


def evaluate_checkpoint(setting, cfg, run, explicit):
    """Evaluate the --resume checkpoint on the test split and print its accuracy."""
    if not run['resume']:
        raise UserError('--evaluate needs --resume CKPT, the checkpoint to evaluate')
    path = run['resume']
    log = setup_logging(quiet=dist.launched() and dist.rank() > 0)
    state = load_checkpoint(path)
    check_setting(state, setting, path)
    saved = state['config']
    for key in sorted(explicit - set(EVAL_OVERRIDABLE)):
        if cfg[key] != saved.get(key):
            raise UserError(f'--{key} cannot change when evaluating a checkpoint; its value '
                            f'comes from {path}')
    given = {k: cfg[k] for k in explicit if k in EVAL_OVERRIDABLE}
    cfg = {**with_saved(cfg, saved, path), **given}
    configure_torch(cfg)
    device = dist.setup(resolve_device(cfg['device']))
    note_data_root(log, saved, cfg, explicit)
    data = load_data(cfg, ('test',), setting, device, log)
    names = (*check_data(state, path, data.describe()), BACKGROUND_NAME)
    model = model_from_checkpoint(state, path, data.sizes).to(device)
    keep_freed_memory(cfg, device)

    with allocation_errors('--eval_batch_size'):
        acc, preds = evaluate(model, data, 'test', cfg, cfg['progress'])
    rep = report(data.segment[data.splits['test']], preds, names)
    log.info(f'checkpoint {path} (epoch {state["epoch"]}) on {data.num_videos("test")} test videos')
    log.info(f'test accuracy: {acc:.3f}')
    log.info(event_summary(rep))
    if run['report'] and dist.rank() == 0:
        folder = make_folder(run['report'], '--report')
        write_report_with_figures(folder, {'test': rep}, {
            'setting': setting, 'epoch': state['epoch'], 'checkpoint': str(path)}, 'test split')
        log.info(f"report: {folder / 'report.md'} (with report.json, confusion_matrix.png, "
                 'per_class_accuracy.png)')
    return {'test_accuracy': acc, 'epoch': state['epoch']}


def train(setting, cfg, run, explicit):
    """Train (or, with --resume, continue) a run; returns metrics.json's content."""
    state = None
    if run['resume']:
        state = load_checkpoint(run['resume'])
        check_setting(state, setting, run['resume'])
        if 'optimizer' not in state:
            raise UserError(f"{run['resume']} holds only a model; resume training from the "
                            f'{LAST} of its run folder')
        check_fields(state, run['resume'], TRAINING_FIELDS)
        check_training_state(state, run['resume'])
        cfg = resume_config(state['config'], cfg, explicit, run['resume'])
        if 'snapshot_pref' not in explicit:
            cfg['snapshot_pref'] = str(Path(run['resume']).parent)
    done = 0 if state is None else state['epoch']
    if cfg['n_epoch'] <= done:
        setup_logging().info(f"nothing to train: --n_epoch {cfg['n_epoch']} and {done} epochs "
                             'done; nothing was written')
        return None
    configure_torch(cfg)
    device = dist.setup(resolve_device(cfg['device']))
    rank, world = dist.rank(), dist.world()
    writes = rank == 0            # only rank 0 writes the run folder
    if writes:
        folder, new = prepare_run_dir(cfg['snapshot_pref'], resume=run['resume'],
                                      overwrite=run['overwrite'])
        dist.tell_launcher(folder)
    else:
        folder, new = Path(cfg['snapshot_pref']), False
    progress = cfg['progress'] and writes

    with (removed_on_failure(folder, new, resuming=state is not None) if writes
          else contextlib.nullcontext()):
        log = setup_logging(folder / 'train.log' if writes else None, quiet=not writes)
        if state is not None:
            note_data_root(log, state['config'], cfg, explicit)
        seed_everything(cfg['seed'])
        generator = torch.Generator().manual_seed(cfg['seed'])   # the order of training videos
        data = load_data(cfg, ('train', 'val', 'test'), setting, device, log,
                         background=cfg.get('background', False))
        label, baseline = majority_baseline(data)

        with allocation_errors('--d_model, --ff_dim, --agta_hidden or --mfb_factor'):
            if state is None:
                net = build_model(model_args(setting, data.sizes, cfg)).to(device)
                names = data.class_names
            else:
                names = check_data(state, run['resume'], data.describe())
                net = model_from_checkpoint(state, run['resume'], data.sizes).to(device)
        names = (*names, BACKGROUND_NAME)
        described = {**data.describe(), 'class_names': list(names[:-1])}
        criterion = build_criterion(cfg, setting, data.num_classes)
        # The fused kernel updates all parameters in one launch on CUDA; CPU keeps the default.
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg['lr'],
                                     weight_decay=cfg['weight_decay'], fused=device.type == 'cuda')
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg['lr_milestones'],
                                                         cfg['lr_gamma'])
        best = {'epoch': 0, 'selected': None, 'val_accuracy': None, 'test_accuracy': None,
                'checkpoint': None}
        history, start = [], 1
        if state is not None:
            with damaged_state(run['resume']):
                optimizer.load_state_dict(state['optimizer'])
                scheduler.load_state_dict(state['scheduler'])
                restore_rng_state(state['rng'], generator, device, rank, world, cfg['seed'])
                best, history, start = state['best'], state['history'], state['epoch'] + 1
            if writes:
                best = restore_best(folder, best, state, Path(run['resume']).parent, log)
            log.info(f"resuming {run['resume']} at epoch {start}")
        else:
            seed_rank(cfg['seed'], rank)
            if writes:
                copy_source(folder)
        # Under torchrun, DDP averages the gradients of the ranks after every backward pass.
        model = net if world == 1 else DistributedDataParallel(
            net, device_ids=[device.index] if device.type == 'cuda' else None)
        if writes:
            write_text(folder / 'config.yaml', dump_config(cfg))
        keep_freed_memory(cfg, device)
        ranks = f' on {world} processes (global batch {cfg["batch_size"]})' if world > 1 else ''
        log.info(f'{setting} DMIN: {count_parameters(net):,} parameters, device {device}{ranks}, '
                 f"{data.num_videos('train')} train / {data.num_videos('val')} val / "
                 f"{data.num_videos('test')} test videos, run folder {folder}")

    writer = tensorboard_writer(folder, purge_step=start) if writes else None
    with interrupted(folder), allocation_errors('--batch_size, --eval_batch_size or the widths'):
        for epoch in range(start, cfg['n_epoch'] + 1):
            began = time.perf_counter()
            lr = optimizer.param_groups[0]['lr']
            stats = train_one_epoch(model, criterion, data, optimizer, epoch, cfg, generator,
                                    progress)
            scheduler.step()
            train_seconds = time.perf_counter() - began
            val_acc, val_preds = evaluate(net, data, 'val', cfg, progress)
            test_acc, test_preds = evaluate(net, data, 'test', cfg, progress)
            # Every rank's dropout state (a collective: all ranks take part), for resuming.
            rank_states = dist.gather_tensors(dropout_state(device), device)
            if not writes:
                continue
            reports = {s: report(data.segment[data.splits[s]], p, names)
                       for s, p in (('val', val_preds), ('test', test_preds))}
            record = {'epoch': epoch, 'lr': lr, 'train': stats, 'val_accuracy': val_acc,
                      'test_accuracy': test_acc, 'train_seconds': train_seconds,
                      'seconds': time.perf_counter() - began}
            history.append(record)
            # TensorBoard first: a run killed after saving last.pth.tar must not lose the epoch's
            # events (a resumed run purges any events of the epochs it repeats).
            log_epoch(writer, log, record, criterion.weight_dict)
            every = cfg['tb_images_every']
            if every and (epoch % every == 0 or epoch == cfg['n_epoch']):
                log_report_images(writer, reports, epoch)

            selected = val_acc if cfg['select_on'] == 'val' else test_acc
            previous_best = best['checkpoint']
            weights = {'setting': setting, 'epoch': epoch, 'model': net.state_dict(),
                       'model_args': net.args, 'data': described, 'config': cfg}
            if best['selected'] is None or selected > best['selected']:
                name = best_name(epoch, selected, setting)
                save_checkpoint({**weights, 'val_accuracy': val_acc, 'test_accuracy': test_acc},
                                folder / name)
                best = {'epoch': epoch, 'selected': selected, 'val_accuracy': val_acc,
                        'test_accuracy': test_acc, 'checkpoint': name}
                write_report(folder, reports, {'setting': setting, 'epoch': epoch, 'checkpoint': name,
                                               'select_on': cfg['select_on']})
            # last.pth.tar names the new best before the old best is deleted, so a crash at any
            # point leaves a last.pth.tar whose best checkpoint exists.
            save_checkpoint({**weights, 'optimizer': optimizer.state_dict(),
                             'scheduler': scheduler.state_dict(),
                             'rng': rng_state(generator, rank_states),
                             'best': best, 'history': history}, folder / LAST)
            if previous_best and previous_best != best['checkpoint']:
                remove_best(folder, previous_best)
            write_json(folder / 'metrics.json', run_summary(setting, cfg, best, history, baseline))
    if not writes:
        return None
    writer.close()

    if best['epoch']:
        log.info(f"best epoch {best['epoch']} (selected on {cfg['select_on']}): val accuracy "
                 f"{best['val_accuracy']:.3f}, test accuracy {best['test_accuracy']:.3f}")
        log.info(f"majority-class baseline (every segment '{names[label]}'): val "
                 f"{baseline['val_accuracy']:.3f}, test {baseline['test_accuracy']:.3f}")
        log.info(f"checkpoint: {folder / best['checkpoint']}" if best['checkpoint'] else
                 f"checkpoint: none (the file of epoch {best['epoch']} is missing)")
    log.info(f'TensorBoard: {tensorboard_command(folder)}')
    return run_summary(setting, cfg, best, history, baseline)
