"""The frame: every import points down the floors, nothing above the ground floor knows the
AVE release's sizes, and the program is only the program.

    floor 0  core/ (errors, atomic files, locks), dataset/layout.py (the data description)
    floor 1  dataset/, model/                         (kept apart)
    floor 2  features/ (videos -> features in the dataset layout), reports/ (metrics,
             report files, figures)                   (kept apart; features never use model/)
    floor 3  engine/ (the loop, checkpoints, the run folder, config, devices, processes,
             logging)
    floor 4  main.py, the program of event localization; cml.py, that of cross-modality
             localization                              (kept apart)
    floor 5  supv_main.py, weak_main.py, cml_main.py, tools/
"""
import ast

import pytest

from tests.helpers import REPO

FLOORS = {'core': 0, 'dataset.layout': 0, 'dataset': 1, 'model': 1, 'features': 2,
          'reports': 2, 'engine': 3, 'main': 4, 'cml': 4, 'supv_main': 5, 'weak_main': 5,
          'cml_main': 5, 'tools': 5}
APART = {('dataset', 'model'), ('model', 'dataset'), ('features', 'reports'),
         ('reports', 'features'), ('features', 'model'), ('main', 'cml'), ('cml', 'main')}
# The AVE release's description (dataset/layout.py). Above the ground floor, code takes the
# sizes of its data from a DataSpec; only the modules that exist to make or mimic the AVE
# release's own files may name the release.
AVE_NAMES = {'AVE', 'CLASSES'}
AVE_MAKERS = {
    'dataset.synthetic': "writes AVE-shaped sets; AVE's sizes are its defaults",
    'dataset.labels': "builds the release's label files from its Annotations.txt",
    'features.extract': 'cuts videos into 10-second windows by default, as the release',
    'tools.benchmark': 'times AVE-sized batches',
    'tools.official_speed': "times the DMIN release, whose model is built for AVE's sizes",
}


def module_name(path, root=REPO):
    return '.'.join(path.relative_to(root).with_suffix('').parts).removesuffix('.__init__')


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
            found += [f'{node.module}.{a.name}' for a in node.names]   # `from engine import x`
    return [m for m in found if place(m)]


def upward(module, path):
    """The imports of `module` (the file at `path`) that point up a floor or to a package
    kept apart from it."""
    floor, package = place(module)
    return [m for m in imports(path) if place(m)[0] > floor or (package, place(m)[1]) in APART]


def ave_names(path):
    """The AVE release's names that the file at `path` uses: imported from dataset.layout, or
    read from it as an attribute (`L.AVE`)."""
    tree = ast.parse(path.read_text())
    aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for a in node.names if a.name == 'dataset.layout'}
    aliases |= {a.asname or a.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == 'dataset'
                for a in node.names if a.name == 'layout'}
    used = {a.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == 'dataset.layout'
            for a in node.names if a.name in AVE_NAMES}
    used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and isinstance(node.value, ast.Name) and node.value.id in aliases
             and node.attr in AVE_NAMES}
    return sorted(used)


SOURCES = sorted(p for p in REPO.glob('**/*.py')
                 if not {'.venv', 'tests', 'runs', 'data'} & set(p.relative_to(REPO).parts))


def test_every_module_has_a_floor():
    assert [module_name(p) for p in SOURCES if place(module_name(p)) is None] == []


@pytest.mark.parametrize('path', SOURCES, ids=[module_name(p) for p in SOURCES])
def test_imports_point_down(path):
    assert upward(module_name(path), path) == []


@pytest.mark.parametrize('path', SOURCES, ids=[module_name(p) for p in SOURCES])
def test_only_the_ground_floor_and_the_ave_makers_name_the_ave_release(path):
    module = module_name(path)
    if place(module)[0] > 0 and module not in AVE_MAKERS:
        assert ave_names(path) == [], f'{module} knows the AVE release; take a DataSpec'


def test_the_rules_catch_what_they_forbid(tmp_path):
    """Each rule, on a small tree that breaks it."""
    (tmp_path / 'dataset').mkdir()
    (tmp_path / 'engine').mkdir()
    bad = tmp_path / 'dataset' / 'ave.py'
    bad.write_text('import os\nfrom main import main\nfrom engine import loop\n'
                   'def f():\n    from model.dmin import DMIN\n')
    assert upward(module_name(bad, tmp_path), bad) == ['main', 'main.main', 'engine',
                                                        'engine.loop', 'model.dmin',
                                                        'model.dmin.DMIN']
    fine = tmp_path / 'engine' / 'loop.py'
    fine.write_text('from dataset.ave import load_ave\nfrom model import build_model\n')
    assert upward(module_name(fine, tmp_path), fine) == []
    knows = tmp_path / 'engine' / 'checkpoint.py'
    knows.write_text('from dataset.layout import AVE, DataSpec\nfrom dataset import layout as L\n'
                     'x = L.CLASSES\ny = L.AUDIO_FILES\n')
    assert ave_names(knows) == ['AVE', 'CLASSES']
    assert ave_names(fine) == []


def test_only_the_entry_points_call_the_program():
    callers = [module_name(p) for p in SOURCES if any(m.split('.')[0] == 'main'
                                                      for m in imports(p))]
    assert sorted(callers) == ['supv_main', 'tools.multiseed', 'weak_main']
    callers = [module_name(p) for p in SOURCES if any(m.split('.')[0] == 'cml'
                                                      for m in imports(p))]
    assert sorted(callers) == ['cml_main', 'tools.predict']
