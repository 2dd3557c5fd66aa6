"""What a run reports beside its metrics: the majority-class baseline, metrics.json's
summary, and the evaluation report files (report.json, report.md, figures)."""
from pathlib import Path

import torch

from core.atomic import write_json, write_text
from core.errors import UserError
from dataset.layout import ORDER_FILES
from reports.metrics import report_markdown


def majority_baseline(data):
    """The most frequent segment label of the training videos (background videos aside, so
    both settings get the same baseline), and the val/test accuracy of predicting it everywhere."""
    rows = data.splits['train']
    rows = rows[~torch.isin(rows, data.background_rows)]
    label = int(torch.bincount(data.segment[rows].flatten()).argmax())
    return label, {f'{s}_accuracy': 100.0 * float((data.segment[data.splits[s]] == label).float().mean())
                   for s in ('val', 'test')}


def run_summary(setting, cfg, best, history, baseline):
    """The content of metrics.json."""
    return {'setting': setting, 'select_on': cfg['select_on'], 'best_epoch': best['epoch'],
            'val_accuracy': best['val_accuracy'], 'test_accuracy': best['test_accuracy'],
            'best_checkpoint': best['checkpoint'], 'epochs_done': len(history),
            'majority_baseline': baseline, 'history': history}


def write_report(folder, reports, header):
    """report.json ({**header, 'splits': {split: metrics.report}}) and report.md in `folder`."""
    folder = Path(folder)
    write_json(folder / 'report.json', {**header, 'splits': reports})
    where = f" (epoch {header['epoch']}, {header['checkpoint']})" if 'epoch' in header else ''
    pages = [f"# Evaluation report: {header['setting']} {header.get('method', 'DMIN')}{where}", '']
    pages += [report_markdown(rep, f'{split} split' if split in ORDER_FILES else split)
              for split, rep in reports.items()]
    write_text(folder / 'report.md', '\n'.join(pages))


def make_folder(folder, flag):
    """Create `folder` (and its parents); a UserError naming `flag` if that is impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f'{flag} {folder} cannot be created ({e.strerror}); choose a folder '
                        'you can write to') from None
    return folder


def write_report_with_figures(folder, reports, header, title):
    """write_report, plus the confusion-matrix and per-class figures of the single report."""
    from reports import plots   # matplotlib loads only when figures are wanted
    write_report(folder, reports, header)
    [rep] = reports.values()
    plots.save_report_figures(Path(folder), rep, title)
