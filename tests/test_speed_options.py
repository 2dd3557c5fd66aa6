"""Speed options keep results: bf16 autocast on CPU, float16 feature storage, the benchmark."""
import json
import os
import statistics
import subprocess
import sys

import h5py
import pytest
import torch

from dataset.ave import load_ave
from dataset.h5io import write_h5
from dataset.layout import AUDIO_FILES, FEATURE_KEY, VISUAL_FILE
import engine.device
from main import main
from tests.helpers import REPO, SMALL_FLAGS, SMALL_MODEL, TINY_MODEL, build
from engine.loop import evaluate, train_one_epoch


def small_setup(tiny_ave, *flags, model_keys=SMALL_MODEL, **load):
    torch.manual_seed(0)
    data = load_ave(tiny_ave, splits=('train', 'val'), progress=False, **load)
    cfg, model, criterion = build('supervised', '--batch_size', '8', *flags, **model_keys,
                                  spec=data.spec)
    return cfg, data, model, criterion


@pytest.fixture(scope='module')
def narrow(micro_ave, tmp_path_factory):
    """The micro set with 32 audio and 64 visual channels: the layers whose width the data
    set (512 x 512 on AVE's maps) are what bf16 makes slow on CPUs without bf16 instructions."""
    folder = tmp_path_factory.mktemp('narrow')
    for src in micro_ave.iterdir():
        channels = {AUDIO_FILES[0]: 32, VISUAL_FILE: 64}.get(src.name)
        if channels is None:
            (folder / src.name).symlink_to(src)
            continue
        with h5py.File(src, 'r') as f:
            write_h5(folder / src.name, FEATURE_KEY, f[FEATURE_KEY][..., :channels])
    return folder


def test_bf16_autocast_computes_in_bfloat16_keeps_float32_weights_and_learns(narrow):
    # Narrow features and the tiny model: bf16 products are slow on CPUs without bf16
    # instructions.
    cfg, data, model, criterion = small_setup(narrow, '--amp', 'bf16', '--lr', '3e-3',
                                              '--batch_size', '4', model_keys=TINY_MODEL)
    assert (data.spec.num_classes, data.spec.audio_dim, data.spec.visual_dim) == (28, 32, 64)
    dtypes = set()
    model.visual_encoder.proj.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'])
    stats = [train_one_epoch(model, criterion, data, optimizer, e, cfg,
                             torch.Generator().manual_seed(0), progress=False) for e in (1, 2, 3)]
    assert dtypes == {torch.bfloat16}                                  # the products ran in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())   # weights stay float32
    assert stats[-1]['loss'] < stats[0]['loss']
    bf16 = evaluate(model, data, 'val', cfg, progress=False)
    fp32 = evaluate(model, data, 'val', dict(cfg, amp='none'), progress=False)
    assert (bf16 == fp32).float().mean() >= 0.9


def test_float16_storage_predicts_like_float32(tiny_ave):
    cfg, data32, model, criterion = small_setup(tiny_ave)
    data16 = load_ave(tiny_ave, splits=('train', 'val'), feature_dtype=torch.float16, progress=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in (1, 2, 3):
        train_one_epoch(model, criterion, data32, optimizer, epoch, cfg,
                        torch.Generator().manual_seed(epoch), progress=False)
    p32 = evaluate(model, data32, 'val', cfg, progress=False)
    p16 = evaluate(model, data16, 'val', cfg, progress=False)
    assert (p32 == p16).float().mean() >= 0.98


def test_benchmark_quick_mode_writes_its_json(tmp_path, capsys):
    from tools.benchmark import main as benchmark        # in this process: no second start-up
    out = tmp_path / 'bench.json'
    benchmark(['--quick', '--device', 'cpu', '--amp', 'none', '--out', str(out),
               '--no_reuse_memory', '--models', 'dmin', 'avel', '--profile'])
    result = json.loads(out.read_text())
    rows = {r['part']: r for r in result['devices']['cpu']['profile']['dmin/supervised']}
    assert {'agta.spatial', 'agta.temporal.lstm', 'forward', 'backward', 'step'} <= set(rows)
    assert rows['agta.temporal.lstm']['gflop_per_video'] > 0   # the LSTMs are counted
    assert rows['step']['gflop_per_video'] == pytest.approx(
        rows['forward']['gflop_per_video'] + rows['backward']['gflop_per_video'])
    assert 0 < rows['agta.spatial']['ms'] < rows['forward']['ms'] < rows['step']['ms']
    for key in ('dmin/supervised/none', 'avel/weak/none'):
        row = result['devices']['cpu'][key]
        assert row['train_videos_per_s'] > 0 and row['eval_videos_per_s'] > 0
        assert 0 < row['fraction_of_matmul_peak']
    assert set(result['devices']['cpu']['matmul_peak']) == {'none'}
    assert 'matmul peak' in capsys.readouterr().out
    assert result['machine']['reuse_memory'] is False


# Prints whether reuse was applied, then the page faults of each of 10 rounds of what a
# training step does to memory: blocks above glibc's largest mmap threshold (32 MB), as the
# MFB activations of a batch-32 step are (80 MB each), made, used and freed. numpy's large
# arrays come from glibc's malloc as torch's CPU tensors do, and numpy starts in a fraction
# of torch's import time.
BLOCK_FAULTS = """
import resource, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from engine.memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[2] == 'reuse' else False
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a, b = np.ones(16 * 2 ** 20, np.float32), np.ones(20 * 2 ** 20, np.float32)  # 64, 80 MB
    c = a + 1
    del a, b, c
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, *faults)
"""


def test_reuse_freed_memory_keeps_large_freed_blocks_for_the_next_step():
    def block_faults(mode):
        # numpy asks for huge pages on large arrays (512 times fewer faults); torch does not.
        out = subprocess.run([sys.executable, '-c', BLOCK_FAULTS, str(REPO), mode],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, 'NUMPY_MADVISE_HUGEPAGE': '0'}).stdout.split()
        return out[0] == 'True', [int(n) for n in out[1:]]

    applied, reused = block_faults('reuse')
    if not applied:
        pytest.skip('not Linux with glibc: reuse_freed_memory does nothing here')
    _, default = block_faults('default')
    # By default every round maps its 208 MB afresh: 53248 pages of 4 KiB. With reuse the
    # heap grows over the first rounds, and then the freed blocks are taken back.
    pages = 208 * 2 ** 20 // 4096
    assert statistics.median(default[5:]) >= 0.9 * pages, default
    assert statistics.median(reused[5:]) < 0.05 * pages, reused


@pytest.mark.parametrize('flags, calls', [((), 1), (('--no_reuse_memory',), 0)])
def test_reuse_memory_flag_decides_whether_cpu_runs_keep_freed_memory(tiny_ave, tmp_path,
                                                                       monkeypatch, flags, calls):
    seen = []
    monkeypatch.setattr(engine.device, 'reuse_freed_memory', lambda: seen.append(1) or True)
    result = main('supervised', [
        '--data_root', str(tiny_ave), '--snapshot_pref', str(tmp_path / 'run'), '--n_epoch', '1',
        '--batch_size', '8', '--no_progress', '--tb_images_every', '0', *flags, *SMALL_FLAGS])
    assert result['epochs_done'] == 1 and len(seen) == calls


STAND_IN = '''"""A stand-in for the official release's model, with its interface (tests only)."""
import torch
from torch import nn


class supv_main_model(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(512 + 128, 29).cuda()      # the release calls .cuda() too

    def forward(self, visual, audio):
        x = self.layer(torch.cat([visual.mean((2, 3)), audio], -1))    # (B, T, 29)
        return x[..., :1].transpose(0, 1), x.mean(1)[:, :28], x.amax(1)[:, :28]
'''


def test_official_speed_times_both_sides(tmp_path):
    """tools/official_speed.py on a stand-in of the release's model: both sides run in their
    own processes and the JSON has the ratio of the medians; a folder without the model is
    one line."""
    official = tmp_path / 'DIMN'
    (official / 'model').mkdir(parents=True)
    (official / 'model' / 'supv_main_model.py').write_text(STAND_IN)
    out = tmp_path / 'speed.json'
    done = subprocess.run([sys.executable, 'tools/official_speed.py', '--official', str(official),
                           '--rounds', '1', '--steps', '1', '--batch', '2', '--out', str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    speed = result['videos_per_s']
    assert speed['official'] > 0 and speed['ours'] > 0
    assert result['ratio'] == pytest.approx(speed['ours'] / speed['official'])
    assert 'this repository' in done.stdout
    wrong = subprocess.run([sys.executable, 'tools/official_speed.py', '--official', str(tmp_path)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and 'no model/supv_main_model.py' in wrong.stderr
