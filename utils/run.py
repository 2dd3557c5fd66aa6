"""The program behind supv_main.py and weak_main.py: flags in, training or evaluation, results out."""
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from dataset.ave import load_ave
from dataset.layout import LABEL_NAMES, ORDER_FILES
from model import build_criterion, build_model, count_parameters
from utils.checkpoint import (LAST, best_name, load_checkpoint, load_model_state, restore_rng_state,
                              rng_state, save_checkpoint, seed_everything, write_text)
from utils.config import RESUME_OVERRIDABLE, dump_config, parse_config, resume_config
from utils.engine import evaluate, train_one_epoch
from utils.errors import UserError, exit_on_user_error
from utils.logger import setup_logging
from utils.memory import reuse_freed_memory
from utils.metrics import event_summary, report, report_markdown
from utils.run_dir import copy_source, keep_best, prepare_run_dir

SCRIPTS = {'supervised': ('supv_train.sh', 'supv_test.sh'), 'weak': ('weak_train.sh', 'weak_test.sh')}
# Flags that may differ from a checkpoint's config when only evaluating it.
EVAL_OVERRIDABLE = RESUME_OVERRIDABLE + ('eval_batch_size', 'feature_dtype', 'amp')


def resolve_device(name):
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            raise UserError(f'--device {name}: no CUDA device is available here; use --device cpu '
                            'or --device auto')
        index = int(name.split(':')[1]) if ':' in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f'--device {name}: only {torch.cuda.device_count()} CUDA device(s) '
                            'here; use cuda:0 .. cuda:N-1')
    return torch.device(name)


def configure_torch(cfg):
    if cfg['num_threads']:
        torch.set_num_threads(cfg['num_threads'])
    if cfg['deterministic']:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def prepare_memory(cfg, device):
    """With --reuse_memory on the CPU, keep freed memory for reuse (see utils/memory.py).

    Called after the data are loaded, so that loading keeps its lower peak."""
    return device.type == 'cpu' and cfg['reuse_memory'] and reuse_freed_memory()


def check_setting(state, setting, path):
    if state.get('setting') != setting:
        train_sh, test_sh = SCRIPTS.get(state.get('setting'), ('?', '?'))
        raise UserError(f"{path} was saved by the {state.get('setting')} setting, not {setting}; "
                        f'use {train_sh} / {test_sh} for it')


def compiled(model, cfg):
    """torch.compile(model) with --compile, else the model itself (same parameters)."""
    return torch.compile(model) if cfg['compile'] else model


def feature_dtype(cfg):
    return getattr(torch, cfg['feature_dtype'])


@exit_on_user_error
def main(setting, argv=None, prog=None):
    """Run the command line of `setting` ('supervised' or 'weak'); returns metrics."""
    cfg, run, explicit = parse_config(setting, argv, prog)
    if run['report'] and not run['evaluate']:
        raise UserError('--report goes with --evaluate; a training run writes report.json and '
                        'report.md of its best epoch to its run folder by itself')
    if run['evaluate']:
        return evaluate_checkpoint(setting, cfg, run, explicit)
    return train(setting, cfg, run, explicit)


def evaluate_checkpoint(setting, cfg, run, explicit):
    """Evaluate the --resume checkpoint on the test split and print its accuracy."""
    if not run['resume']:
        raise UserError('--evaluate needs --resume CKPT, the checkpoint to evaluate')
    path = run['resume']
    state = load_checkpoint(path)
    check_setting(state, setting, path)
    saved = dict(state['config'])
    for key in sorted(explicit - set(EVAL_OVERRIDABLE)):
        if cfg[key] != saved.get(key):
            raise UserError(f'--{key} cannot change when evaluating a checkpoint; its value '
                            f'comes from {path}')
    # Keys added to the repository after the checkpoint was written take today's value.
    cfg = {**cfg, **saved, **{k: cfg[k] for k in explicit if k in EVAL_OVERRIDABLE}}
    log = setup_logging()
    configure_torch(cfg)
    device = resolve_device(cfg['device'])
    data = load_ave(cfg['data_root'], ('test',), setting, background=False, device=device,
                    feature_dtype=feature_dtype(cfg), progress=cfg['progress'])
    prepare_memory(cfg, device)
    model = build_model(cfg, setting).to(device)
    load_model_state(model, state, path)
    acc, preds = evaluate(compiled(model, cfg), data, 'test', cfg, cfg['progress'])
    rep = report(data.segment[data.splits['test']], preds)
    log.info(f'checkpoint {path} (epoch {state["epoch"]}) on {data.num_videos("test")} test videos')
    log.info(f'test accuracy: {acc:.3f}')
    log.info(event_summary(rep))
    if run['report']:
        save_evaluation_report(run['report'], rep, {'setting': setting, 'epoch': state['epoch'],
                                                    'checkpoint': str(path)})
        log.info(f"report: {Path(run['report']) / 'report.md'} (with report.json, "
                 'confusion_matrix.png, per_class_accuracy.png)')
    return {'test_accuracy': acc, 'epoch': state['epoch']}


def train(setting, cfg, run, explicit):
    state = None
    if run['resume']:
        state = load_checkpoint(run['resume'])
        check_setting(state, setting, run['resume'])
        if 'optimizer' not in state:
            raise UserError(f"{run['resume']} holds only a model; resume training from the "
                            f'{LAST} of its run folder')
        cfg = resume_config(state['config'], cfg, explicit, run['resume'])
        if 'snapshot_pref' not in explicit:
            cfg['snapshot_pref'] = str(Path(run['resume']).parent)
    folder = prepare_run_dir(cfg['snapshot_pref'], resume=run['resume'], overwrite=run['overwrite'])
    log = setup_logging(folder / 'train.log')
    configure_torch(cfg)
    device = resolve_device(cfg['device'])
    seed_everything(cfg['seed'])
    generator = torch.Generator().manual_seed(cfg['seed'])   # the order of training videos

    data = load_ave(cfg['data_root'], ('train', 'val', 'test'), setting,
                    background=cfg.get('background', False), device=device,
                    feature_dtype=feature_dtype(cfg), progress=cfg['progress'])
    label, baseline = majority_baseline(data)
    prepare_memory(cfg, device)
    model = build_model(cfg, setting).to(device)
    criterion = build_criterion(cfg, setting)
    # The fused kernel updates all parameters in one launch on CUDA; CPU keeps the default.
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'], weight_decay=cfg['weight_decay'],
                                 fused=device.type == 'cuda')
    net = compiled(model, cfg)   # what runs; `model` is what is saved
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg['lr_milestones'],
                                                     cfg['lr_gamma'])
    best = {'epoch': 0, 'selected': None, 'val_accuracy': None, 'test_accuracy': None,
            'checkpoint': None}
    history, start = [], 1
    if state is not None:
        load_model_state(model, state, run['resume'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        restore_rng_state(state['rng'], generator)
        best, history, start = state['best'], state['history'], state['epoch'] + 1
        keep_best(folder, best['checkpoint'], Path(run['resume']).parent)
        log.info(f"resuming {run['resume']} at epoch {start}")
    else:
        copy_source(folder)
    write_text(folder / 'config.yaml', dump_config(cfg))
    log.info(f'{setting} DMIN: {count_parameters(model):,} parameters, device {device}, '
             f"{data.num_videos('train')} train / {data.num_videos('val')} val / "
             f"{data.num_videos('test')} test videos, run folder {folder}")

    writer = SummaryWriter(folder / 'tensorboard', purge_step=start)
    for epoch in range(start, cfg['n_epoch'] + 1):
        began = time.perf_counter()
        lr = optimizer.param_groups[0]['lr']
        stats = train_one_epoch(net, criterion, data, optimizer, epoch, cfg, generator,
                                cfg['progress'])
        scheduler.step()
        train_seconds = time.perf_counter() - began
        val_acc, val_preds = evaluate(net, data, 'val', cfg, cfg['progress'])
        test_acc, test_preds = evaluate(net, data, 'test', cfg, cfg['progress'])
        reports = {s: report(data.segment[data.splits[s]], p)
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
        if best['selected'] is None or selected > best['selected']:
            name = best_name(epoch, selected, setting)
            save_checkpoint({'setting': setting, 'epoch': epoch, 'model': model.state_dict(),
                             'config': cfg, 'val_accuracy': val_acc, 'test_accuracy': test_acc},
                            folder / name)
            best = {'epoch': epoch, 'selected': selected, 'val_accuracy': val_acc,
                    'test_accuracy': test_acc, 'checkpoint': name}
            write_report(folder, reports, {'setting': setting, 'epoch': epoch, 'checkpoint': name,
                                           'select_on': cfg['select_on']})
        # last.pth.tar names the new best before the old best is deleted, so a crash at any
        # point leaves a last.pth.tar whose best checkpoint exists.
        save_checkpoint({'setting': setting, 'epoch': epoch, 'model': model.state_dict(),
                         'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict(),
                         'rng': rng_state(generator), 'best': best, 'history': history,
                         'config': cfg}, folder / LAST)
        if previous_best and previous_best != best['checkpoint']:
            (folder / previous_best).unlink(missing_ok=True)
        write_text(folder / 'metrics.json',
                   json.dumps(metrics(setting, cfg, best, history, baseline), indent=1))
    writer.close()

    summary = metrics(setting, cfg, best, history, baseline)
    if best['checkpoint']:
        log.info(f"best epoch {best['epoch']} (selected on {cfg['select_on']}): val accuracy "
                 f"{best['val_accuracy']:.3f}, test accuracy {best['test_accuracy']:.3f}")
        log.info(f"majority-class baseline (every segment '{LABEL_NAMES[label]}'): val "
                 f"{baseline['val_accuracy']:.3f}, test {baseline['test_accuracy']:.3f}")
        log.info(f"checkpoint: {folder / best['checkpoint']}")
    log.info(f'TensorBoard: tensorboard --logdir {folder}')
    return summary


def majority_baseline(data):
    """The most frequent segment label of the training videos (background videos aside, so
    both settings get the same baseline), and the val/test accuracy of predicting it everywhere."""
    rows = data.splits['train']
    rows = rows[~torch.isin(rows, data.background_rows)]
    label = int(torch.bincount(data.segment[rows].flatten()).argmax())
    return label, {f'{s}_accuracy': 100.0 * float((data.segment[data.splits[s]] == label).float().mean())
                   for s in ('val', 'test')}


def metrics(setting, cfg, best, history, baseline):
    return {'setting': setting, 'select_on': cfg['select_on'], 'best_epoch': best['epoch'],
            'val_accuracy': best['val_accuracy'], 'test_accuracy': best['test_accuracy'],
            'best_checkpoint': best['checkpoint'], 'epochs_done': len(history),
            'majority_baseline': baseline, 'history': history}


def log_epoch(writer, log, record, weight_dict):
    epoch, train = record['epoch'], record['train']
    writer.add_scalar('loss/total', train['loss'], epoch)
    for name in weight_dict:
        writer.add_scalar(f'loss/{name}', train[name], epoch)
    writer.add_scalar('accuracy/train', train['accuracy'], epoch)
    writer.add_scalar('accuracy/val', record['val_accuracy'], epoch)
    writer.add_scalar('accuracy/test', record['test_accuracy'], epoch)
    writer.add_scalar('lr', record['lr'], epoch)
    writer.flush()
    terms = ' '.join(f'{k} {train[k]:.4f}' for k in weight_dict)
    log.info(f"epoch {epoch:3d} | lr {record['lr']:.2e} | loss {train['loss']:.4f} ({terms}) | "
             f"train {train['accuracy']:.2f} | val {record['val_accuracy']:.2f} | "
             f"test {record['test_accuracy']:.2f} | {record['seconds']:.1f}s")


def write_report(folder, reports, header):
    """report.json ({**header, 'splits': {split: metrics.report}}) and report.md in `folder`."""
    write_text(folder / 'report.json', json.dumps({**header, 'splits': reports}, indent=1))
    where = f" (epoch {header['epoch']}, {header['checkpoint']})" if 'epoch' in header else ''
    pages = [f"# Evaluation report: {header['setting']} DMIN{where}", '']
    pages += [report_markdown(rep, f'{split} split' if split in ORDER_FILES else split)
              for split, rep in reports.items()]
    write_text(folder / 'report.md', '\n'.join(pages))


def save_evaluation_report(folder, rep, header):
    """--evaluate --report DIR: the test split's report files and figures in DIR."""
    from utils import plots
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f'--report {folder} cannot be created ({e.strerror}); choose a folder '
                        'you can write to')
    write_report(folder, {'test': rep}, header)
    plots.save_report_figures(folder, rep, 'test split')


def log_report_images(writer, reports, epoch):
    """Per-class accuracy bars and the confusion matrix of each split, as TensorBoard images."""
    from utils import plots   # matplotlib loads only when images are wanted
    for split, rep in reports.items():
        bars = plots.per_class_figure(rep['per_class'], rep['accuracy'],
                                      title=f'Per-class accuracy, {split}, epoch {epoch}')
        writer.add_image(f'per_class_accuracy/{split}', plots.to_image(bars), epoch,
                         dataformats='HWC')
        matrix = plots.confusion_figure(rep['confusion'],
                                        title=f'Confusion matrix, {split}, epoch {epoch}')
        writer.add_image(f'confusion_matrix/{split}', plots.to_image(matrix), epoch,
                         dataformats='HWC')
    writer.flush()
