"""The methods beside DMIN (model/avel.py, psp.py, cmran.py, cmbs.py): their size, outputs and
training step, and their checkpoints through the programs (--model)."""
import json

import pytest
import torch

from dataset.layout import AVE, DataSpec
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.config import default_config
from engine.loop import train_step
from main import main
from model import METHODS, build_model, count_parameters, model_args
from model.criterion import total_loss
from tests.helpers import BACKGROUND, NO_IMAGES, build, user_error
from tools.predict import main as predict

OTHERS = ('avel', 'psp', 'cmran', 'cmbs')
# The official models' trainable parameters that receive a gradient (their modules that no
# forward reaches are not built here; docs/methods.md lists both counts), each counted by
# building the official code.
USED_PARAMETERS = {
    ('avel', 'supervised'): 1_335_246, ('avel', 'weak'): 1_335_246,
    ('psp', 'supervised'): 1_548_657, ('psp', 'weak'): 1_253_902,
    ('cmran', 'supervised'): 9_509_150, ('cmran', 'weak'): 9_509_407,
    ('cmbs', 'supervised'): 9_200_473, ('cmbs', 'weak'): 9_395_518,
}
# Narrow versions of each method, for the runs of the programs.
SMALL = {
    'avel': ['--lstm_hidden', '8', '--attention_hidden', '16'],
    'psp': ['--lstm_hidden', '8', '--attention_hidden', '16'],
    'cmran': ['--d_model', '16', '--n_heads', '2', '--ff_dim', '32', '--encoder_layers', '1',
              '--attention_hidden', '16', '--fusion_heads', '2'],
    'cmbs': ['--d_model', '16', '--n_heads', '2', '--ff_dim', '32', '--decoder_ff_dim', '32',
             '--encoder_layers', '1', '--attention_hidden', '16', '--fusion_heads', '2'],
}
SMALL_LSTMS = {'supervised': ['--audio_lstm_hidden', '8', '--visual_lstm_hidden', '8']}


def small_flags(model, setting):
    extra = SMALL_LSTMS.get(setting, []) if model == 'cmbs' else []
    return ['--model', model, *SMALL[model], *extra, *NO_IMAGES]


def batch(B=4, T=10):
    """Inputs and targets of B videos: video i of class 3 + 2i with events on segments 2-7,
    the last video background only (weak label: background)."""
    torch.manual_seed(0)
    classes = torch.arange(B) * 2 + 3
    segment = torch.full((B, T), BACKGROUND)
    segment[:, 2:8] = classes[:, None]
    segment[-1] = BACKGROUND
    label = torch.nn.functional.one_hot(classes, AVE.num_classes + 1).float()
    label[-1] = torch.nn.functional.one_hot(torch.tensor(BACKGROUND), AVE.num_classes + 1)
    targets = {'segment': segment, 'video_class': classes, 'video_label': label}
    return torch.rand(B, T, 128), torch.rand(B, T, 7, 7, 512), targets


@pytest.mark.parametrize('model, setting', sorted(USED_PARAMETERS))
def test_parameter_count_equals_the_official_models(model, setting):
    cfg, _ = default_config(setting, model)
    net = build_model(model_args(setting, AVE, cfg))
    assert count_parameters(net) == USED_PARAMETERS[model, setting]


def test_avel_dmrn_fusion_has_the_official_count():
    cfg, _ = default_config('supervised', 'avel')
    net = build_model(model_args('supervised', AVE, {**cfg, 'avel_fusion': 'dmrn'}))
    assert count_parameters(net) == 1_571_150


@pytest.mark.parametrize('model', OTHERS)
@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_forward_shapes_and_every_parameter_learns(model, setting):
    """Outputs of (B, T) predictions within the labels, float32 throughout; every parameter
    gets a gradient (no layer is built that the loss does not reach); the criterion's terms
    are its weight_dict's."""
    _, net, criterion = build(setting, *small_flags(model, setting))
    audio, visual, targets = batch()
    out = net(audio, visual)
    assert all(v.dtype == torch.float32 and v.shape[0] == 4 for v in out.values())
    pred, confidence = net.predict(out), net.confidence(out)
    assert pred.shape == confidence.shape == (4, 10) and pred.dtype == torch.int64
    assert ((pred >= 0) & (pred <= BACKGROUND)).all()
    assert ((confidence >= 0) & (confidence <= 1)).all()
    terms = criterion(out, targets)
    assert set(terms) == set(criterion.weight_dict)
    total_loss(terms, criterion.weight_dict).backward()
    silent = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []


@pytest.mark.parametrize('model', OTHERS)
@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_one_training_step_lowers_the_loss(model, setting):
    cfg, net, criterion = build(setting, *small_flags(model, setting))
    audio, visual, targets = batch()
    net.eval()   # no dropout: the same function before and after the step

    def loss():
        with torch.no_grad():
            return float(total_loss(criterion(net(audio, visual), targets), criterion.weight_dict))

    before = loss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    train_step(net, criterion, optimizer, audio, visual, targets, cfg)
    assert loss() < before


def test_the_sizes_come_from_the_data():
    spec = DataSpec(5, 4, 16, (4, 4, 24))   # 4 segments: CMBS's top-4 still fits
    for model in OTHERS:
        for setting in ('supervised', 'weak'):
            _, net, _ = build(setting, *small_flags(model, setting), spec=spec)
            out = net(torch.rand(2, 4, 16), torch.rand(2, 4, 4, 4, 24))
            assert net.predict(out).shape == (2, 4) and net.predict(out).max() <= 5


def test_cmbs_topk_longer_than_the_videos_is_refused(capsys, tmp_path, micro_ave):
    err = user_error(capsys, 'supervised', ['--data_root', micro_ave, '--model', 'cmbs',
                                            '--cmbs_topk', '11', '--no_progress', '--snapshot_pref',
                                            tmp_path / 'run'])
    assert '--cmbs_topk 11' in err and '10 segments' in err


def test_a_flag_of_another_method_is_unknown(capsys, micro_ave, tmp_path):
    err = user_error(capsys, 'supervised', ['--data_root', micro_ave, '--model', 'avel',
                                            '--d_model', '64'])
    assert 'unrecognized arguments: --d_model' in err


# One setting per method (the forward and step tests above cover both): a run costs seconds.
@pytest.mark.parametrize('model, setting', [('avel', 'weak'), ('psp', 'supervised'),
                                            ('cmran', 'weak'), ('cmbs', 'supervised')])
def test_a_checkpoint_evaluates_resumes_predicts_and_refuses_another_model(
        model, setting, micro_ave, tmp_path, capsys):
    run = tmp_path / 'run'
    flags = ['--data_root', str(micro_ave), '--no_progress', '--batch_size', '6']
    result = main(setting, [*flags, *small_flags(model, setting), '--n_epoch', '1',
                            '--snapshot_pref', str(run)])
    state = load_checkpoint(run / 'last.pth.tar')
    assert state['config']['model'] == state['model_args']['model'] == model
    task = 'Supervised' if setting == 'supervised' else 'WeaklySupervised'
    best = list(run.glob(f'model_epoch_1_top1_*_task_{task}_best_model.pth.tar'))
    assert len(best) == 1 and result['best_epoch'] == 1
    # Evaluating reads the method from the checkpoint (no --model needed) ...
    capsys.readouterr()
    evaluated = main(setting, ['--evaluate', '--resume', str(best[0]), *flags[:3]])
    assert evaluated['test_accuracy'] == pytest.approx(result['test_accuracy'])
    assert f"test accuracy: {result['test_accuracy']:.3f}" in capsys.readouterr().out
    # ... so does resuming, which trains the same method on ...
    resumed = main(setting, [*flags, '--resume', str(run / 'last.pth.tar'), '--n_epoch', '2'])
    assert resumed['epochs_done'] == 2
    assert load_checkpoint(run / 'last.pth.tar')['model_args'] == state['model_args']
    # ... and predicting.
    out = tmp_path / 'pred.json'
    predict(['--checkpoint', str(run / 'last.pth.tar'), '--data_root', str(micro_ave),
             '--split', 'test', '--out', str(out), '--no_progress'])
    assert len(json.loads(out.read_text())['videos']) == 2
    # Another --model is refused in one line.
    other = 'dmin' if model != 'dmin' else 'avel'
    err = user_error(capsys, setting, ['--evaluate', '--resume', run / 'last.pth.tar',
                                       '--model', other, *flags[:2]])
    assert f'checkpoint of {model}, not {other}' in err and f'--model {model}' in err


def test_a_checkpoint_naming_no_method_of_ours_is_refused(micro_ave, tmp_path, capsys):
    run = tmp_path / 'run'
    main('supervised', ['--data_root', str(micro_ave), '--no_progress', '--n_epoch', '1',
                        *small_flags('avel', 'supervised'), '--snapshot_pref', str(run)])
    state = load_checkpoint(run / 'last.pth.tar')
    state['model_args']['model'] = 'resnet'
    save_checkpoint(state, tmp_path / 'forged.pth.tar')   # a valid checksum: forged, not damaged
    err = user_error(capsys, 'supervised', ['--evaluate', '--resume', tmp_path / 'forged.pth.tar',
                                            '--data_root', micro_ave])
    assert 'forged.pth.tar' in err and "'resnet'" in err


def test_every_method_has_both_settings():
    assert set(METHODS) == {'dmin', *OTHERS}
    for model in METHODS:
        assert METHODS[model].SETTINGS == ('supervised', 'weak')
        for setting in ('supervised', 'weak'):
            assert default_config(setting, model)[0]['model'] == model
