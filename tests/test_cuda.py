"""CUDA: the same code on the GPU (skipped where there is none; run on a GPU machine)."""
import json

import pytest
import torch

from dataset.ave import load_ave
from main import main
from tests.helpers import SMALL_FLAGS, SMALL_MODEL, build
from engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')


@pytest.mark.parametrize('setting', ['supervised', 'weak'])
@pytest.mark.parametrize('size', ['small', 'full'])
def test_cuda_forward_matches_cpu(setting, size):
    torch.manual_seed(0)
    model = build(setting, **(SMALL_MODEL if size == 'small' else {}))[1].eval()
    audio, visual = torch.rand(4, 10, 128), torch.rand(4, 10, 7, 7, 512)
    with torch.no_grad():
        cpu = model(audio, visual)
        gpu = model.cuda()(audio.cuda(), visual.cuda())
    for key in cpu:
        # cuDNN may use TF32 inside the LSTM: compare at TF32's precision.
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=2e-2, atol=2e-3)


def test_data_lives_on_the_gpu(tiny_ave):
    data = load_ave(tiny_ave, splits=('val',), device='cuda', progress=False)
    audio, visual = data.inputs(data.splits['val'])
    assert audio.is_cuda and visual.is_cuda and data.targets(data.splits['val'])['segment'].is_cuda


def test_bf16_autocast_trains_on_cuda(tiny_ave, tmp_path):
    result = main('supervised', ['--data_root', str(tiny_ave), '--snapshot_pref', str(tmp_path / 'r'),
                                 '--n_epoch', '1', '--batch_size', '8', '--device', 'cuda',
                                 '--amp', 'bf16', '--no_progress', *SMALL_FLAGS])
    assert torch.isfinite(torch.tensor(result['history'][0]['train']['loss']))
    weights = load_checkpoint(tmp_path / 'r' / 'last.pth.tar')['model'].values()
    assert all(w.dtype == torch.float32 for w in weights if w.is_floating_point())


@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_deterministic_cuda_runs_repeat_and_resume_exactly(setting, tiny_ave, tmp_path):
    common = ['--data_root', str(tiny_ave), '--batch_size', '8', '--device', 'cuda',
              '--deterministic', '--no_progress', *SMALL_FLAGS]
    a = main(setting, common + ['--snapshot_pref', str(tmp_path / 'a'), '--n_epoch', '3'])
    b = main(setting, common + ['--snapshot_pref', str(tmp_path / 'b'), '--n_epoch', '3'])
    main(setting, common + ['--snapshot_pref', str(tmp_path / 'c'), '--n_epoch', '1'])
    c = main(setting, ['--resume', str(tmp_path / 'c' / 'last.pth.tar'), '--n_epoch', '3',
                       '--data_root', str(tiny_ave), '--device', 'cuda', '--no_progress'])
    untimed = lambda r: json.dumps([{k: v for k, v in e.items() if 'seconds' not in k}
                                    for e in r['history']])
    assert untimed(a) == untimed(b) == untimed(c)
