"""README, docs/, configs, flags and scripts agree: every command the docs show names flags
its script takes, every link and every test the docs cite exists, every flag of the tools
is documented as itself (not inside a longer flag)."""
import ast
import re

import pytest

from engine.config import SCRIPTS, build_parser, default_config
from tests.helpers import REPO

README = (REPO / 'README.md').read_text()
DOCS = {p.name: p.read_text() for p in sorted((REPO / 'docs').glob('*.md'))}
PAGES = {'README.md': README, **{f'docs/{k}': v for k, v in DOCS.items()}}


def shell_commands(text):
    """The commands of the ```bash blocks of `text`, continuation lines joined."""
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        joined = re.sub(r'\\\n\s*', ' ', block)
        commands += [line.split('#')[0].strip() for line in joined.splitlines()
                     if line.split('#')[0].strip()]
    return commands


def flags_of(parser):
    return {f for action in parser._actions for f in action.option_strings}


def script_flags():
    """{script: the flags it takes}, from the parsers the scripts run."""
    from tools.extract_features import build_parser as extract_parser
    from tools.multiseed import build_parser as multiseed_parser
    from tools.predict import build_parser as predict_parser
    found = {}
    for setting, scripts in SCRIPTS.items():
        defaults, helps = default_config(setting)
        train = flags_of(build_parser(setting, defaults, helps, scripts.train))
        found[scripts.train] = found[scripts.program] = train
        found[scripts.test] = flags_of(build_parser(setting, defaults, helps, scripts.test,
                                                    evaluation=True))
    found['demo.sh'] = found['supv_train.sh'] & found['weak_train.sh'] | {'--help'}
    found['predict.sh'] = flags_of(predict_parser())
    found['multiseed.sh'] = flags_of(multiseed_parser()) | found['supv_train.sh'] | \
        found['weak_train.sh']
    found['extract_features.sh'] = flags_of(extract_parser())
    return found


def test_every_command_the_docs_show_uses_flags_its_script_takes():
    flags = script_flags()
    checked = 0
    for page, text in PAGES.items():
        for command in shell_commands(text):
            words = command.split()
            if 'NPROC=' in words[0]:
                words = words[1:]
            if words[:1] != ['bash'] or words[1] not in flags:
                continue
            unknown = [w.split('=')[0] for w in words[2:]
                       if w.startswith('--') and w.split('=')[0] not in flags[words[1]]]
            assert unknown == [], f'{page}: `{command}` gives {words[1]} {unknown}'
            checked += 1
    assert checked >= 15, checked


def test_the_scripts_the_readme_names_exist():
    named = set(re.findall(r'\b([a-z_]+\.sh)\b', README))
    assert {'supv_train.sh', 'supv_test.sh', 'weak_train.sh', 'weak_test.sh', 'demo.sh',
            'predict.sh', 'multiseed.sh', 'extract_features.sh'} <= named
    assert all((REPO / name).is_file() for name in named), named


@pytest.mark.parametrize('page', sorted(PAGES))
def test_every_relative_link_points_to_a_file(page):
    folder = (REPO / page).parent
    links = re.findall(r'\]\(([^)#:]+)(?:#[^)]*)?\)', PAGES[page])
    assert [link for link in links if not (folder / link).exists()] == []


def test_every_test_the_reliability_page_cites_exists():
    cited = re.findall(r'`(test_\w+)\.py::(test_\w+)`', DOCS['reliability.md'])
    defined = {}
    for path in (REPO / 'tests').glob('test_*.py'):
        defined[path.stem] = {n.name for n in ast.walk(ast.parse(path.read_text()))
                              if isinstance(n, ast.FunctionDef)}
    missing = [f'{m}::{t}' for m, t in cited if t not in defined.get(m, ())]
    assert len(cited) > 40 and missing == []


def test_the_tool_flags_are_documented_as_themselves():
    from tools.extract_features import build_parser as extract_parser
    from tools.multiseed import build_parser as multiseed_parser
    from tools.predict import build_parser as predict_parser
    text = '\n'.join(PAGES.values())
    for parser in (predict_parser(), multiseed_parser(), extract_parser()):
        flags = {f for f in flags_of(parser) if f.startswith('--') and f != '--help'}
        missing = sorted(f for f in flags if not re.search(rf'{re.escape(f)}(?![\w-])', text))
        assert missing == [], f'the docs lack {missing} of {parser.prog}'


def test_the_readme_is_for_users():
    assert len(README.splitlines()) <= 260


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
    # ... and the README says why each one is there.
    listed = set(re.findall(r'^\| (\S+)', README.split('## Dependencies')[1], re.M))
    assert {name for name, _, _ in wanted} <= listed, listed
