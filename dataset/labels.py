"""Label and split files of the AVE layout, built from the annotation text files.

    python -m dataset.labels --annotations Annotations.txt --out DIR [--splits DIR]

writes labels.h5, mil_labels.h5 and labels_closs.h5 (key `avadataset`; the last, (N, T),
1 on each event segment, is what cross-modality localization reads) and, with `--splits`
(the folder of trainSet.txt / valSet.txt / testSet.txt), train/val/test_order.h5 (key
`order`): the same arrays as the AVE feature release, so a user with only the annotations
(or re-extracted features) can rebuild them.
"""

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import UserError
from dataset.h5io import write_h5
from dataset.layout import (ANNOTATIONS_FILE, AVE, CLOSS_FILE, FEATURE_KEY, LABELS_FILE,
                            MIL_LABELS_FILE, ORDER_FILES, ORDER_KEY, SPLIT_FILES)

# One copy of Annotations.txt in the wild starts with this header; the release has none.
HEADER = 'Category&VideoID&Quality&StartTime&EndTime'
FIELDS = ('Category', 'VideoID', 'Quality', 'StartSecond', 'EndSecond')


@dataclass(frozen=True)
class Annotation:
    """One line `Category&VideoID&Quality&StartSecond&EndSecond`; event = segments [start, end)."""
    category: str
    video_id: str
    quality: str
    start: int
    end: int  # start == end: no event (row 26 of the release)
    # 'file:line' for error messages; not part of the identity used to match split lines.
    where: str = field(default='', compare=False)


def _parse_line(text, where):
    """Parse one annotation line; raise `ValueError` naming `where` if it is malformed."""
    parts = text.split('&')
    if len(parts) != len(FIELDS):
        raise ValueError(f'{where}: expected {len(FIELDS)} fields {"&".join(FIELDS)}, '
                         f'got {len(parts)}: {text!r}')
    category, video_id, quality, start, end = (p.strip() for p in parts)
    try:
        start, end = int(start), int(end)
    except ValueError:
        raise ValueError(f'{where}: start/end seconds must be integers: {text!r}') from None
    if not 0 <= start <= end <= AVE.num_segments:
        raise ValueError(f'{where}: need 0 <= start <= end <= {AVE.num_segments}, '
                         f'got start={start} end={end}: {text!r}')
    if not category or not video_id:
        raise ValueError(f'{where}: empty category or video id: {text!r}')
    return Annotation(category, video_id, quality, start, end, where)


def _read_lines(path, allow_header):
    """Parse every non-blank line of `path` into an `Annotation`, in file order."""
    path = Path(path)
    annotations = []
    for number, text in enumerate(path.read_text(encoding='utf-8-sig').splitlines(), 1):
        text = text.strip()
        if not text or (allow_header and not annotations and text == HEADER):
            continue
        annotations.append(_parse_line(text, f'{path}:{number}'))
    if not annotations:
        raise ValueError(f'{path}: no annotation lines')
    return annotations


def read_annotations(path):
    """Read Annotations.txt into a list of `Annotation`, row i = line i (blank lines skipped).

    Tolerates the header variant `Category&VideoID&Quality&StartTime&EndTime` as the first
    line; raises `ValueError` with file:line for a malformed line or an empty file.
    """
    return _read_lines(path, allow_header=True)


def event_labels(class_ids, starts, ends, num_classes=AVE.num_classes, num_segments=AVE.num_segments):
    """Label arrays for videos with class `class_ids[i]` and event segments [starts[i], ends[i]).

    Returns `labels` (N, T, C + 1) float32, one-hot per segment (class column inside the
    event, the background column C elsewhere), and `mil_labels` (N, C + 1) float32, one-hot
    video class (background never set, even for an empty event). C = `num_classes` and
    T = `num_segments` default to the AVE release's 28 and 10 (background: column C).
    """
    class_ids, starts, ends = (np.asarray(a, dtype=np.int64) for a in (class_ids, starts, ends))
    n = len(class_ids)
    if n and not 0 <= class_ids.min() <= class_ids.max() < num_classes:
        raise ValueError(f'class ids must lie in 0..{num_classes - 1}, got '
                         f'{class_ids.min()}..{class_ids.max()}')
    segment = np.arange(num_segments)
    in_event = (segment >= starts[:, None]) & (segment < ends[:, None])  # (N, T)
    column = np.where(in_event, class_ids[:, None], num_classes)  # (N, T)
    labels = np.zeros((n, num_segments, num_classes + 1), dtype=np.float32)
    np.put_along_axis(labels, column[..., None], 1.0, axis=-1)
    mil_labels = np.zeros((n, num_classes + 1), dtype=np.float32)
    mil_labels[np.arange(n), class_ids] = 1.0
    return labels, mil_labels


def event_segments(labels):
    """(N, T) float32, 1 on the event segments of one-hot segment labels (N, T, C + 1): the
    AVE release's labels_closs.h5."""
    return (labels.argmax(-1) != labels.shape[-1] - 1).astype(np.float32)


def build_labels(annotations, classes=AVE.class_names):
    """`(labels, mil_labels)` of `event_labels` for annotation rows, classes indexed by `classes`.

    `classes` lists the AVE release's 28 category names in label-column order; an unknown
    category raises `ValueError` naming the annotation's file:line.
    """
    if len(classes) != AVE.num_classes:
        raise ValueError(f'expected {AVE.num_classes} class names, got {len(classes)}')
    column = {name: i for i, name in enumerate(classes)}
    for a in annotations:
        if a.category not in column:
            raise ValueError(f'{a.where}: unknown category {a.category!r}')
    return event_labels([column[a.category] for a in annotations],
                        [a.start for a in annotations], [a.end for a in annotations])


def build_orders(annotations, split_paths):
    """Map each split's list file to its row indices into `annotations`.

    `split_paths` maps a split name to its file (e.g. {'train': '.../trainSet.txt'}); the
    result maps the same names to int64 arrays with order[i] = the row equal to line i.
    A line that is no row of the annotations raises `ValueError` naming file and line.
    """
    row_of = {}
    for row, a in enumerate(annotations):
        row_of.setdefault(a, row)
    orders = {}
    for split, path in split_paths.items():
        rows = []
        for a in _read_lines(path, allow_header=False):
            if a not in row_of:
                raise ValueError(f'{a.where}: not a line of the annotations: '
                                 f'{a.category}&{a.video_id}&{a.quality}&{a.start}&{a.end}')
            rows.append(row_of[a])
        orders[split] = np.array(rows, dtype=np.int64)
    return orders


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m dataset.labels', description=(
        'Build labels.h5, mil_labels.h5 and labels_closs.h5 (and, with --splits, '
        'train/val/test_order.h5) from the AVE annotation files.'))
    parser.add_argument('--annotations', type=Path, required=True,
                        help=f'path of {ANNOTATIONS_FILE}')
    parser.add_argument('--out', type=Path, required=True, help='folder to write the .h5 files to')
    parser.add_argument('--splits', type=Path,
                        help=f'folder holding {", ".join(SPLIT_FILES.values())}')
    args = parser.parse_args(argv)

    try:
        annotations = read_annotations(args.annotations)
        labels, mil_labels = build_labels(annotations)
        orders = {}
        if args.splits is not None:
            orders = build_orders(annotations, {split: args.splits / name
                                                for split, name in SPLIT_FILES.items()})
        args.out.mkdir(parents=True, exist_ok=True)
        write_h5(args.out / LABELS_FILE, FEATURE_KEY, labels)
        write_h5(args.out / MIL_LABELS_FILE, FEATURE_KEY, mil_labels)
        write_h5(args.out / CLOSS_FILE, FEATURE_KEY, event_segments(labels))
        for split, order in orders.items():
            write_h5(args.out / ORDER_FILES[split], ORDER_KEY, order)
    except (OSError, ValueError, UserError) as e:   # UserError: a write failed
        raise SystemExit(f'dataset.labels: error: {e}') from None

    event_share = labels[..., :AVE.num_classes].sum(-1).mean()
    empty = sum(a.start == a.end for a in annotations)
    written = [LABELS_FILE, MIL_LABELS_FILE, CLOSS_FILE] + [f'{ORDER_FILES[s]} ({len(o)})'
                                                for s, o in orders.items()]
    print(f'{len(annotations)} videos, {event_share:.1%} event segments, {empty} without '
          f'event -> {args.out}: {", ".join(written)}')


if __name__ == '__main__':
    main()
