"""Speed options keep results: bf16 autocast on CPU, float16 feature storage, the benchmark."""
import json
import subprocess
import sys

import torch

from dataset.ave import load_ave
from model import build_criterion, build_model
from tests.helpers import REPO, SMALL_MODEL
from utils.config import parse_config
from utils.engine import evaluate, train_one_epoch


def small_setup(tiny_ave, *flags, **load):
    cfg, _, _ = parse_config('supervised', ['--batch_size', '8', *flags])
    cfg.update(SMALL_MODEL)
    torch.manual_seed(0)
    return cfg, load_ave(tiny_ave, splits=('train', 'val'), progress=False, **load), \
        build_model(cfg, 'supervised')


def test_bf16_autocast_trains_on_cpu(tiny_ave):
    cfg, data, model = small_setup(tiny_ave, '--amp', 'bf16')
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stats = [train_one_epoch(model, build_criterion(cfg, 'supervised'), data, optimizer, e, cfg,
                             torch.Generator().manual_seed(0), progress=False) for e in (1, 2)]
    assert all(torch.isfinite(torch.tensor(s['loss'])) for s in stats)
    assert all(p.dtype == torch.float32 for p in model.parameters())   # weights stay float32
    acc, preds = evaluate(model, data, 'val', cfg, progress=False)
    assert preds.shape == (len(data.splits['val']), 10) and 0 <= acc <= 100


def test_float16_storage_predicts_like_float32(tiny_ave):
    cfg, data32, model = small_setup(tiny_ave)
    data16 = load_ave(tiny_ave, splits=('train', 'val'), feature_dtype=torch.float16, progress=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in (1, 2, 3):
        train_one_epoch(model, build_criterion(cfg, 'supervised'), data32, optimizer, epoch, cfg,
                        torch.Generator().manual_seed(epoch), progress=False)
    _, p32 = evaluate(model, data32, 'val', cfg, progress=False)
    _, p16 = evaluate(model, data16, 'val', cfg, progress=False)
    assert (p32 == p16).float().mean() >= 0.98


def test_benchmark_quick_mode_writes_its_json(tmp_path):
    out = tmp_path / 'bench.json'
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'benchmark.py'), '--quick',
                           '--device', 'cpu', '--out', str(out)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    row = result['devices']['cpu']['supervised/none']
    assert row['train_videos_per_s'] > 0 and row['eval_videos_per_s'] > 0
    assert 0 < row['fraction_of_matmul_peak']
    assert set(result['devices']['cpu']['matmul_peak']) == {'none', 'bf16'}
    assert 'matmul peak' in proc.stdout
