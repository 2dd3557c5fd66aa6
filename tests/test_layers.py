"""The frame: every import points down the floors, and the program is only the program.

    floor 0  core/ (errors, atomic files), dataset/layout.py (the data description)
    floor 1  dataset/, model/, features/    (model and the others are kept apart; features
                                             may read dataset's files, not the reverse)
    floor 2  utils/ (engine, checkpoint, config, report, metrics, logging, run folder)
    floor 3  main.py, the program
    floor 4  supv_main.py, weak_main.py, tools/
"""
import ast

import pytest

from tests.helpers import REPO

FLOORS = {'core': 0, 'dataset.layout': 0, 'dataset': 1, 'model': 1, 'features': 1, 'utils': 2,
          'main': 3, 'supv_main': 4, 'weak_main': 4, 'tools': 4}
SIBLINGS = {('dataset', 'model'), ('model', 'dataset'), ('features', 'model'),
            ('model', 'features'), ('dataset', 'features')}   # same floor, kept apart


def module_name(path):
    return '.'.join(path.relative_to(REPO).with_suffix('').parts).removesuffix('.__init__')


def place(module):
    """(floor, top package) of a project module, or None for anything else."""
    parts = module.split('.')
    for n in range(len(parts), 0, -1):
        if '.'.join(parts[:n]) in FLOORS:
            return FLOORS['.'.join(parts[:n])], parts[0]
    return None


def imports(path):
    """The project modules that the file at `path` imports, anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module)
            found += [f'{node.module}.{a.name}' for a in node.names]   # `from utils import x`
    return [m for m in found if place(m)]


SOURCES = sorted(p for p in REPO.glob('**/*.py')
                 if not {'.venv', 'tests', 'runs', 'data'} & set(p.relative_to(REPO).parts))


def test_every_module_has_a_floor():
    assert [module_name(p) for p in SOURCES if place(module_name(p)) is None] == []


@pytest.mark.parametrize('path', SOURCES, ids=[module_name(p) for p in SOURCES])
def test_imports_point_down(path):
    floor, package = place(module_name(path))
    upward = [m for m in imports(path)
              if place(m)[0] > floor or (package, place(m)[1]) in SIBLINGS]
    assert upward == [], f'{module_name(path)} (floor {floor}) imports from above: {upward}'


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('import os\nfrom main import main\nfrom utils import engine\n'
                   'def f():\n    from model.dmin import DMIN\n')
    assert imports(bad) == ['main', 'main.main', 'utils', 'utils.engine', 'model.dmin',
                            'model.dmin.DMIN']


def test_only_the_entry_points_call_the_program():
    callers = [module_name(p) for p in SOURCES if any(m.split('.')[0] == 'main'
                                                      for m in imports(p))]
    assert sorted(callers) == ['supv_main', 'tools.multiseed', 'weak_main']
