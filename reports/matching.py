"""What cross-modality localization reports (docs/cml.md): the accuracy of the predicted
event starts, by event length, beside two references, and the report files."""
from pathlib import Path

from core.atomic import write_json, write_text


def localization_report(predicted, start, length, num_segments):
    """{accuracy, videos, by_length: {l: {videos, accuracy}}, random_start, first_window}
    of predicted starts against the true `start`s of events of `length` (all (N,) tensors):
    percent of videos whose start is found exactly. random_start is the expected accuracy of
    a uniformly random window, first_window that of always answering the first window
    (what a model whose scores all tie answers)."""
    hit = (predicted == start).float()
    lengths = length.tolist()
    by_length = {}
    for l in sorted(set(lengths)):
        mask = length == l
        by_length[int(l)] = {'videos': int(mask.sum()),
                             'accuracy': 100.0 * float(hit[mask].mean())}
    n = len(lengths)
    return {'accuracy': 100.0 * float(hit.mean()) if n else None, 'videos': n,
            'by_length': by_length,
            'random_start': 100.0 * sum(1 / (num_segments - l + 1) for l in lengths) / n if n else None,
            'first_window': 100.0 * float((start == 0).float().mean()) if n else None}


def report_markdown(rep, title):
    lines = [f'## {title}', '',
             f"Exact start found: **{rep['accuracy']:.2f}%** of {rep['videos']} videos "
             f"(a random window: {rep['random_start']:.2f}%; always the first window: "
             f"{rep['first_window']:.2f}%).", '',
             '| event length (segments) | videos | accuracy |', '|---:|---:|---:|']
    lines += [f"| {l} | {r['videos']} | {r['accuracy']:.2f} |" for l, r in rep['by_length'].items()]
    return '\n'.join(lines) + '\n'


def video_records(file_rows, predicted, start, length):
    """One {row, start, length, predicted_start} per video (`row`: its row in the data
    files)."""
    return [{'row': int(r), 'start': int(s), 'length': int(l), 'predicted_start': int(p)}
            for r, p, s, l in zip(file_rows, predicted.tolist(), start.tolist(), length.tolist())]


def write_localization_report(folder, reports, header, videos=None):
    """report.json ({**header, 'splits': reports}, and `videos`, video_records, where given)
    and report.md in `folder`."""
    folder = Path(folder)
    doc = {**header, 'splits': reports, **({'videos': videos} if videos is not None else {})}
    write_json(folder / 'report.json', doc)
    direction = header['direction'].upper()
    where = f" (epoch {header['epoch']}, {header['checkpoint']})" if 'epoch' in header else ''
    pages = [f"# Cross-modality localization report: {direction}, {header['matcher']}, "
             f"{header['protocol'].upper()} protocol{where}", '']
    pages += [report_markdown(rep, f'{split} split') for split, rep in reports.items()]
    write_text(folder / 'report.md', '\n'.join(pages))
