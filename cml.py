"""The program of cross-modality localization (docs/cml.md): flags in, a matcher trained or
evaluated on the match splits, results out.

cml_main.py calls main(). Like main.py it reads top to bottom: parse the config, prepare
the run folder, load the data, build the matcher, then train epoch by epoch (localizing the
val and test events in both directions, keeping the best epoch of --direction on val,
saving checkpoints) or only evaluate a checkpoint, refusing videos it was trained on.
"""
import time
from pathlib import Path

import torch

from core.atomic import write_text
from core.errors import UserError, check_interrupt, exit_on_user_error
from dataset.h5io import DataError
from dataset.matching import load_match
from engine.checkpoint import (check_setting, load_checkpoint, matcher_for,
                               restore_training, rng_state, seed_everything)
from engine.config import dump_config, evaluation_config, parse_config
from engine.device import allocation_errors, configure_torch, keep_freed_memory, resolve_device
from engine.logger import log_epoch, setup_logging, tensorboard_command, tensorboard_writer
from engine.loop import build_optimizer
from engine.matching import accuracy, localize, train_epoch
from engine.run_dir import (NO_BEST, copy_source, interrupted, prepare_run_dir,
                            removed_on_failure, restore_best, save_epoch, start_or_resume)
from model import count_parameters
from model.matching import DIRECTIONS, NAME, build_matcher, matcher_args, matcher_kind
from reports.matching import localization_report, video_records, write_localization_report

SETTING = 'cml'


@exit_on_user_error
def main(argv=None, prog=None):
    """Run the command line of cross-modality localization; returns the metrics."""
    cfg, run, explicit = parse_config(SETTING, argv, prog)
    if run['evaluate']:
        return evaluate_checkpoint(cfg, run, explicit)
    if run['report']:
        raise UserError('--report goes with --evaluate; a training run writes report.json and '
                        'report.md of its best epoch to its run folder by itself')
    return train(cfg, run, explicit)


def load_data(cfg, splits, device, log):
    try:
        data = load_match(cfg['data_root'], splits, device, cfg['progress'])
    except DataError as e:
        raise UserError(str(e)) from None
    for split in splits:
        if split != 'train' and not partial_events(data, split):
            raise UserError(f'the {split} match split of {cfg["data_root"]} has no video with a '
                            'partial event (1 to T - 1 event segments), so nothing to localize; '
                            'rebuild its order file')
    check_interrupt()
    log.info(f"data: {', '.join(f'{len(data.splits[s])} {s}' for s in splits)} videos of the "
             f'match splits; visual: {data.visual_source}')
    return data


def partial_events(data, split):
    _, length = data.spans(split)
    return int(((length > 0) & (length < data.spec.num_segments)).sum())


def directions_of(cfg):
    """The directions an epoch evaluates: both for a matcher (it is one model for both), its
    own for DCMR (a model per direction)."""
    return (cfg['direction'],) if cfg['protocol'] == 'dcmr' else DIRECTIONS


def epoch_accuracies(model, data, cfg, splits=('val', 'test')):
    """{direction: {split: accuracy}} of `model`."""
    with allocation_errors('--eval_batch_size'):
        return {d: {s: accuracy(*localize(model, data, s, d, cfg['eval_batch_size'])[1:3])
                    for s in splits} for d in directions_of(cfg)}


def data_record(data):
    """What checkpoints record of the data: its sizes, and the training rows (file rows of
    the train match split), which an evaluation must not be given."""
    return {'num_segments': data.spec.num_segments, 'audio_dim': data.spec.audio_dim,
            'visual_dim': data.spec.visual_dim,
            'train_rows': [int(r) for r in data.file_rows.get('train', [])]}


def check_unseen(state, data, path, split='test'):
    """Refuse videos of `split` that checkpoint `path` was trained on: the match splits are
    not the localization splits (most match-test videos are localization training videos),
    so a data folder whose split files are not the ones it was trained beside would let it
    be scored on what it learnt."""
    trained = state['data'].get('train_rows')
    if not isinstance(trained, list) or not all(isinstance(r, int) for r in trained):
        raise UserError(f'{path} does not record the videos it was trained on; use a checkpoint '
                        'written by cml_main.py')
    rows = data.file_rows[split]
    seen = set(trained) & set(int(r) for r in rows)
    if seen:
        raise UserError(f'{path} was trained on {len(seen)} of these {len(rows)} {split} videos '
                        f'(e.g. file row {min(seen)}); localize videos it has not seen (the '
                        'test split of the match splits it was trained beside)')


def evaluate_checkpoint(cfg, run, explicit):
    """Localize the test split's events with the --resume checkpoint; print its accuracy."""
    path = run['resume']
    log = setup_logging()
    state = load_checkpoint(path)
    check_setting(state, SETTING, path)
    cfg = evaluation_config(state['config'], cfg, explicit, path, SETTING)
    if cfg['protocol'] == 'dcmr' and cfg['direction'] != state['config']['direction']:
        raise UserError(f"{path} is a DCMR model of {state['config']['direction']}, which is one "
                        f"model per direction; drop --direction or pass --direction "
                        f"{state['config']['direction']}")
    configure_torch(cfg)
    device = resolve_device(cfg['device'])
    data = load_data(cfg, ('test',), device, log)
    model = matcher_for(state, path, data.spec).to(device)
    check_unseen(state, data, path)
    keep_freed_memory(cfg, device)
    with allocation_errors('--eval_batch_size'):
        rows, predicted, start, length = localize(model, data, 'test', cfg['direction'],
                                                  cfg['eval_batch_size'])
    rep = localization_report(predicted, start, length, data.spec.num_segments)
    name = cfg['direction'].upper()
    log.info(f"checkpoint {path} ({NAME[matcher_kind(cfg)]}, epoch {state['epoch']}) on "
             f"{rep['videos']} test videos with a partial event")
    log.info(f"{name} accuracy: {rep['accuracy']:.3f}")
    if run['report']:
        folder = Path(run['report'])
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f'--report {folder} cannot be created ({e.strerror}); choose a '
                            'folder you can write to') from None
        write_localization_report(folder, {'test': rep}, {
            'direction': cfg['direction'], 'protocol': cfg['protocol'],
            'matcher': NAME[matcher_kind(cfg)], 'epoch': state['epoch'], 'checkpoint': str(path)},
            video_records(data.source_rows[rows.cpu().numpy()], predicted, start, length))
        log.info(f"report: {folder / 'report.md'} (with report.json)")
    return {'test_accuracy': rep['accuracy'], 'epoch': state['epoch']}


def train(cfg, run, explicit):
    """Train (or, with --resume, continue) a run; returns metrics.json's content."""
    state, cfg = start_or_resume(SETTING, cfg, run, explicit)
    if cfg is None:
        return None
    configure_torch(cfg)
    device = resolve_device(cfg['device'])
    folder, new = prepare_run_dir(cfg['snapshot_pref'], run['resume'], run['overwrite'])
    with removed_on_failure(folder, new, resuming=state is not None):
        log = setup_logging(folder / 'train.log')
        seed_everything(cfg['seed'])
        generator = torch.Generator().manual_seed(cfg['seed'])   # the order of examples
        data = load_data(cfg, ('train', 'val', 'test'), device, log)
        if state is not None:
            model = matcher_for(state, run['resume'], data.spec)
            if state['data']['train_rows'] != data_record(data)['train_rows']:
                raise UserError(f"{run['resume']} was trained on other videos than this data "
                                'folder\'s train match split; resume it on its own data')
        else:
            model = build_matcher(matcher_args(data.spec, cfg))
        model.to(device)
        optimizer, scheduler = build_optimizer(model, cfg, device)
        best, history, start = NO_BEST, [], 1
        if state is not None:
            best, history, start = restore_training(state, run['resume'], optimizer, scheduler,
                                                    generator, device, cfg['seed'])
            best = restore_best(folder, best, state, Path(run['resume']).parent, log)
            log.info(f"resuming {run['resume']} at epoch {start}")
        else:
            copy_source(folder)
        write_text(folder / 'config.yaml', dump_config(cfg))
        keep_freed_memory(cfg, device)
        log.info(f"cross-modality localization, {cfg['direction'].upper()} selected on val, "
                 f"{NAME[matcher_kind(cfg)]}: {count_parameters(model):,} parameters, device "
                 f"{device}, run folder {folder}")

    writer = tensorboard_writer(folder, purge_step=start)
    with interrupted(folder), allocation_errors('--batch_size, --eval_batch_size or the widths'):
        for epoch in range(start, cfg['n_epoch'] + 1):
            began = time.perf_counter()
            lr = optimizer.param_groups[0]['lr']
            stats = train_epoch(model, data, optimizer, cfg, generator, cfg['progress'])
            scheduler.step()
            train_seconds = time.perf_counter() - began
            scores = epoch_accuracies(model, data, cfg)
            own = scores[cfg['direction']]
            history.append({'epoch': epoch, 'lr': lr, 'train': stats,
                            'val_accuracy': own['val'], 'test_accuracy': own['test'],
                            'directions': scores, 'train_seconds': train_seconds,
                            'seconds': time.perf_counter() - began})
            log_epoch(writer, log, history[-1], {})   # its val and test: --direction's
            for d, by_split in scores.items():
                for s, value in by_split.items():
                    writer.add_scalar(f'{d}/{s}', value, epoch)
                if d != cfg['direction']:
                    log.info(f"          {d.upper()}: val {by_split['val']:.2f} | test "
                             f"{by_split['test']:.2f}")
            weights = {'setting': SETTING, 'epoch': epoch, 'model': model.state_dict(),
                       'model_args': model.args, 'data': data_record(data), 'config': cfg}
            training = {'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict(),
                        'rng': rng_state(generator)}
            best = save_epoch(folder, SETTING, cfg, weights, training, history, best,
                              lambda folder, header: best_report(folder, header, model, data,
                                                                 cfg),
                              lambda best: summary(cfg, best, history))
    writer.close()
    if best['epoch']:
        log.info(f"best epoch {best['epoch']} (selected on val, {cfg['direction'].upper()}): "
                 f"val accuracy {best['val_accuracy']:.3f}, test accuracy "
                 f"{best['test_accuracy']:.3f}")
        log.info(f"checkpoint: {folder / best['checkpoint']}")
    log.info(f'TensorBoard: {tensorboard_command(folder)}')
    return summary(cfg, best, history)


def best_report(folder, header, model, data, cfg):
    """report.json and report.md of the new best epoch: val and test, by event length."""
    reports = {}
    for split in ('val', 'test'):
        _, predicted, start, length = localize(model, data, split, cfg['direction'],
                                               cfg['eval_batch_size'])
        reports[split] = localization_report(predicted, start, length, data.spec.num_segments)
    write_localization_report(folder, reports, {**header, 'direction': cfg['direction'],
                                                'protocol': cfg['protocol'],
                                                'matcher': NAME[matcher_kind(cfg)]})


def summary(cfg, best, history):
    """The content of metrics.json."""
    return {'setting': SETTING, 'direction': cfg['direction'], 'protocol': cfg['protocol'],
            'model': cfg['model'], 'select_on': 'val', 'best_epoch': best['epoch'],
            'val_accuracy': best['val_accuracy'], 'test_accuracy': best['test_accuracy'],
            'best_checkpoint': best['checkpoint'], 'epochs_done': len(history),
            'history': history}
