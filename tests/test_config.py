"""Configuration: YAML defaults = flags, unknown keys and bad values are clear errors."""
import re

import pytest

from engine.config import default_config, parse_config, resume_config
from core.errors import UserError


@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_defaults_are_the_release_recipe(setting):
    cfg, _, explicit = parse_config(setting, [])
    assert explicit == set()
    recipe = {'supervised': dict(seed=456, lr_milestones=[10, 20, 30], clip_gradient=0.1,
                                 dima_dropout=0.02, fusion_heads=4, eval_batch_size=16),
              'weak': dict(seed=666, lr_milestones=[5, 20, 40], clip_gradient=0.5,
                           dima_dropout=0.1, fusion_heads=2, background=True)}[setting]
    assert {k: cfg[k] for k in recipe} == recipe
    assert (cfg['lr'], cfg['batch_size'], cfg['n_epoch'], cfg['lr_gamma'], cfg['weight_decay']) \
        == (5e-4, 32, 200, 0.5, 0.0)
    assert cfg['select_on'] == 'val'


@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_every_config_key_is_a_flag_with_help(setting, capsys):
    defaults, helps = default_config(setting)
    assert set(helps) == set(defaults), 'every key needs a help comment in its YAML file'
    with pytest.raises(SystemExit):
        parse_config(setting, ['--help'])
    text = capsys.readouterr().out
    # Each flag stands on a line of its own in the options list, followed by its help (a
    # flag found inside another, --lr inside --lr_gamma, does not count).
    listed = set(re.findall(r'^  (--\w+)', text, re.M))
    for key, value in defaults.items():
        assert f'--{key}' in listed, key
        assert helps[key].split()[0] in text.split(f'  --{key}', 1)[1][:300], key
        if isinstance(value, bool):
            assert f'--no_{key}' in listed, key


def test_flags_override_and_are_typed():
    cfg, run, explicit = parse_config('supervised', [
        '--lr', '1e-3', '--n_epoch', '3', '--lr_milestones', '2', '4', '--no_progress',
        '--select_on', 'test', '--resume', 'x.pth.tar'])
    assert cfg['lr'] == 1e-3 and cfg['n_epoch'] == 3 and cfg['lr_milestones'] == [2, 4]
    assert cfg['progress'] is False and cfg['select_on'] == 'test'
    assert run['resume'] == 'x.pth.tar' and not run['evaluate']
    assert explicit == {'lr', 'n_epoch', 'lr_milestones', 'progress', 'select_on'}


def test_config_file_then_flags(tmp_path):
    path = tmp_path / 'mine.yaml'
    path.write_text('lr: 0.001\nbatch_size: 8\nlr_milestones: [3]\n')
    cfg, _, _ = parse_config('supervised', ['--config', str(path), '--batch_size', '4'])
    assert (cfg['lr'], cfg['batch_size'], cfg['lr_milestones']) == (0.001, 4, [3])


@pytest.mark.parametrize('text, message', [
    ('learning_rate: 0.1\n', "unknown config key 'learning_rate'"),
    ('lr: fast\n', 'lr must be a number'),
    ('progress: 1\n', 'progress must be true or false'),
    ('lr: [1\n', 'not valid YAML'),
])
def test_bad_config_file_is_a_user_error(tmp_path, text, message):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        parse_config('supervised', ['--config', str(path)])


def test_background_key_only_exists_in_weak_setting(tmp_path):
    path = tmp_path / 'weak_only.yaml'
    path.write_text('background: false\n')
    with pytest.raises(UserError, match="unknown config key 'background'"):
        parse_config('supervised', ['--config', str(path)])
    assert parse_config('weak', ['--config', str(path)])[0]['background'] is False


@pytest.mark.parametrize('argv, message', [
    (['--lr', '-0.1'], '--lr -0.1 is invalid'),
    (['--batch_size', '0'], '--batch_size 0 is invalid'),
    (['--eval_batch_size', '0'], '--eval_batch_size 0 is invalid'),
    (['--device', 'tpu'], '--device .tpu. is invalid'),
    (['--n_heads', '3'], '--n_heads 3 is invalid'),
    (['--lr_milestones', '20', '10'], 'epochs must increase'),
    (['--clip_gradient', '-1'], '--clip_gradient -1.0 is invalid'),
    (['--dima_dropout', '1.0'], '--dima_dropout 1.0 is invalid'),
    (['--snapshot_pref', ''], '--snapshot_pref .. is invalid'),
])
def test_bad_flag_values_are_user_errors(argv, message):
    with pytest.raises(UserError, match=message):
        parse_config('supervised', argv)


@pytest.mark.parametrize('argv, message', [
    (['--learning_rate', '0.1'], 'unrecognized arguments: --learning_rate 0.1'),
    (['--select_on', 'train'], "argument --select_on: invalid choice: 'train'"),
    (['--amp', 'fp8'], "argument --amp: invalid choice: 'fp8'"),
    (['--batch_size', 'many'], "argument --batch_size: invalid int value: 'many'"),
])
def test_unknown_flags_and_bad_choices_are_one_line_user_errors(argv, message):
    with pytest.raises(UserError, match=f'{message}.*; see .* --help$'):
        parse_config('supervised', argv, prog='supv_main.py')


def test_resume_keeps_saved_config_but_allows_run_flags():
    saved, _, _ = parse_config('supervised', ['--lr', '1e-3'])
    cfg, _, explicit = parse_config('supervised', ['--n_epoch', '5', '--data_root', 'elsewhere'])
    resumed = resume_config(saved, cfg, explicit, 'last.pth.tar', 'supervised')
    assert resumed['lr'] == 1e-3 and resumed['n_epoch'] == 5 and resumed['data_root'] == 'elsewhere'
    cfg, _, explicit = parse_config('supervised', ['--lr', '0.1'])
    with pytest.raises(UserError, match='--lr 0.1 differs from the value 0.001 stored in last.pth.tar'):
        resume_config(saved, cfg, explicit, 'last.pth.tar', 'supervised')


def test_data_in_memory_takes_auto_true_false_from_flags_and_yaml_booleans(tmp_path):
    assert parse_config('supervised', [])[0]['data_in_memory'] == 'auto'
    assert parse_config('supervised', ['--data_in_memory', 'false'])[0]['data_in_memory'] == 'false'
    path = tmp_path / 'c.yaml'
    path.write_text('data_in_memory: true\nnum_workers: 0\nprefetch: 3\n')   # YAML's booleans
    cfg, _, explicit = parse_config('supervised', ['--config', str(path)])
    assert (cfg['data_in_memory'], cfg['num_workers'], cfg['prefetch']) == ('true', 0, 3)
    assert {'data_in_memory', 'num_workers', 'prefetch'} <= explicit
    for argv, message in ((['--data_in_memory', 'yes'], 'invalid choice'),
                          (['--num_workers', '-1'], 'must be >= 0'),
                          (['--prefetch', '0'], 'must be > 0')):
        with pytest.raises(UserError, match=message):
            parse_config('supervised', argv)
