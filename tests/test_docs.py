"""README, configs, flags and scripts agree."""
import re

from tests.helpers import REPO
from engine.config import default_config

README = (REPO / 'README.md').read_text()


def test_every_config_key_is_documented():
    for setting in ('supervised', 'weak'):
        defaults, _ = default_config(setting)
        missing = [k for k in defaults if f'`{k}`' not in README]
        assert missing == [], f'README lacks config keys {missing}'


def test_run_flags_and_scripts_are_documented():
    for flag in ('--config', '--resume', '--evaluate', '--overwrite', '--no_background',
                 '--report'):
        assert flag in README
    for script in ('supv_train.sh', 'supv_test.sh', 'weak_train.sh', 'weak_test.sh', 'demo.sh',
                   'predict.sh', 'multiseed.sh', 'extract_features.sh'):
        assert script in README and (REPO / script).is_file()


def test_ci_runs_the_readme_test_command():
    command = re.search(r'^(\.venv/bin/python -m pytest[^\n#]*?)\s*(#.*)?$', README, re.M).group(1)
    assert command.strip() in (REPO / '.ci' / 'run').read_text()


def test_the_tests_run_in_the_environment_requirements_txt_describes():
    """torch is pinned exactly (a newer or unpinned torch pulls a multi-GB CUDA build) and
    every requirement is met by what is installed here."""
    from importlib.metadata import version
    wanted = [re.fullmatch(r'([\w-]+)(==|>=)([\d.]+)', line).groups()
              for line in (REPO / 'requirements.txt').read_text().splitlines()
              if line and not line.startswith('#')]
    assert ('torch', '==', '2.13.0') in wanted
    numbers = lambda v: tuple(int(x) for x in re.match(r'[\d.]+', v).group().strip('.').split('.'))
    for name, op, pinned in wanted:
        have = numbers(version(name))
        assert have == numbers(pinned) if op == '==' else have >= numbers(pinned), (name, have)


def test_predict_multiseed_and_extraction_flags_are_documented():
    from tools.extract_features import build_parser as extract_parser
    from tools.multiseed import build_parser as multiseed_parser
    from tools.predict import build_parser as predict_parser
    for parser in (predict_parser(), multiseed_parser(), extract_parser()):
        flags = {f for action in parser._actions for f in action.option_strings
                 if f.startswith('--') and f != '--help'}
        missing = sorted(f for f in flags if f'`{f}' not in README and f'{f} ' not in README)
        assert missing == [], f'README lacks {missing} of {parser.prog}'
