"""Every ```bash / ```python block of README.md and docs/*.md runs as written, or is listed with why not.

Shell commands: ``make X`` names a Makefile target; ``python tools/X.py ...`` (``python -m M``,
``torchrun ... tools/X.py``, ``tools/dist_train.sh``) names a script that exists and whose argument
parser accepts the command line (with placeholders such as ``<folder>`` or ``[--flag]``: knows every
``--flag`` it shows); ``python -c CODE`` compiles; any other program is in ``OTHER_PROGRAMS``.
Python blocks: every one compiles; those in ``RUN`` run offline on a tiny R2D2 saved where the
snippet expects the demo model (``work_dirs/demo/model``), with a tiny toy corpus at
``data/toy_shapes``; every other block is in ``NOT_RUN`` with the reason.
"""
import argparse
import contextlib
import io
import json
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
FENCE = re.compile(r'^```(bash|python)\n(.*?)^```', re.M | re.S)

# programs other than make / python / tools scripts, and why their commands are not run here
OTHER_PROGRAMS = {
    '.venv/bin/pip': 'installs packages (network); make runs the same install',
    'mkdir': 'makes a folder',
    'img2dataset': 'downloads the Zero corpus images (network, days)',
}
# python -m modules that only install: not run
PYTHON_MODULES_NOT_RUN = {'venv': 'creates a virtual environment (make does)'}

# Python blocks are named by their document and the start of their first line.
# Blocks that run here -> what must appear in their output (pasted into a script, they print).
RUN = {
    ('README.md', 'from r2d2lib import R2D2Inferencer'): 'test_000000.png',
    ('README.md', 'import torch'): 'tensor(',
    ('inference.md', 'from r2d2lib import R2D2Inferencer'): 'test_000000.png',
}
# Blocks that do not run here, and why (every block not in RUN must be here, and only those).
FRAGMENT = 'a config fragment or a signature, not a program (configs/ are tested)'
NOT_RUN = {
    ('README.md', 'from r2d2lib import R2D2Model, load_model'): 'loads epoch_8.pth of a trained demo; '
                                                                 'push_to_hub needs the network and a login',
    ('captioning.md', 'from r2d2lib import R2D2Inferencer'): 'needs a trained caption model, a.jpg, b.jpg',
    ('components.md', 'DualEncoderModel('): FRAGMENT,
    ('components.md', 'ContrastiveObjective('): FRAGMENT,
    ('components.md', 'R2D2Objective('): FRAGMENT,
    ('components.md', 'R2D2Model('): FRAGMENT,
    ('components.md', '_base_ = '): FRAGMENT,
    ('converters.md', 'import torch'): 'needs the official checkpoints',
    ('converters.md', 'image_encoder=dict('): FRAGMENT,
    ('converters.md', 'model = dict('): FRAGMENT,
    ('datasets.md', "{'img_path'"): 'a record layout',
    ('datasets.md', 'train_dataloader = dict('): FRAGMENT,
    ('datasets.md', "dict(type='RetrievalDataset'"): FRAGMENT,
    ('datasets.md', "dict(type='Flickr30kCNDataset', data_root='data/flickr30k_cn',"): FRAGMENT,
    ('datasets.md', "dict(type='Flickr30kCNDataset', data_root='data/flickr30k_cna',"): FRAGMENT,
    ('datasets.md', "dict(type='COCOCNDataset'"): FRAGMENT,
    ('datasets.md', 'val_dir = '): FRAGMENT,
    ('datasets.md', "dict(type='MUGEDataset'"): FRAGMENT,
    ('datasets.md', "dict(type='ZeroShotClassificationDataset'"): FRAGMENT,
    ('datasets.md', '# training (configs/'): FRAGMENT,
    ('datasets.md', 'from r2d2lib.datasets.toy_shapes import'): 'writes the 2,200-image corpus '
                                                                 '(tests/datasets test the generator)',
    ('evaluation.md', "val_cfg = dict(type='RetrievalValLoop'"): FRAGMENT,
    ('evaluation.md', "val_cfg = dict(type='MatchingValLoop'"): FRAGMENT,
    ('evaluation.md', "test_cfg = dict(type='ZeroShotTestLoop'"): FRAGMENT,
    ('evaluation.md', 'from r2d2lib.evaluation import'): 'an API sketch: its inputs are named, not made',
    ('finetune.md', 'load_from = '): FRAGMENT,
    ('get_started.md', 'import torch'): "loads epoch_8.pth of a trained demo (README.md's twin runs here)",
    ('hub.md', 'from r2d2lib import R2D2Model, load_model'): 'loads from the Hub (network) and epoch_8.pth',
    ('hub.md', 'from r2d2lib import load_model'): 'loads epoch_8.pth of a trained demo',
    ('hub.md', 'model.push_to_hub('): 'needs the network and a Hub login',
    ('model_zoo.md', 'import r2d2lib'): 'builds ViT-L and loads weights from the Hub (network)',
    ('objective.md', '# configs/_base_/models/'): FRAGMENT,
}


def listed(name: str, first: str) -> tuple:
    """The one RUN / NOT_RUN key naming the block of document ``name`` whose first line is ``first``."""
    keys = [key for key in (*RUN, *NOT_RUN) if key[0] == name and first.startswith(key[1])]
    assert len(keys) == 1, f'{name}: {first!r}: ' + (f'named by {keys}' if keys else
                                                     'run it here (RUN) or say why not (NOT_RUN)')
    return keys[0]


def blocks(language: str):
    """(file name, first line, body) of every fenced block of ``language``."""
    for path in DOCS:
        for lang, body in FENCE.findall(path.read_text(encoding='utf-8')):
            if lang == language:
                yield path.name, body.splitlines()[0].rstrip(), body


def shell_commands():
    """(file name, words) of every command of every bash block: continuations joined, comments and
    environment assignments dropped, ``&&`` chains split."""
    for name, _, body in blocks('bash'):
        for line in body.replace('\\\n', ' ').splitlines():
            words = shlex.split(line, comments=True)
            while words:
                command = words[:words.index('&&')] if '&&' in words else words
                words = words[len(command) + 1:]
                while command and re.fullmatch(r'[A-Z_]+=\S*', command[0]):
                    command = command[1:]
                if command:
                    yield name, command


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


_parsers = {}


def argument_parser(target: str, module: bool = False) -> argparse.ArgumentParser:
    """The ArgumentParser a script (or ``python -m`` module) builds: run it until it parses, stop there."""
    if target in _parsers:
        return _parsers[target]
    real = argparse.ArgumentParser.parse_known_args

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    argv, path = sys.argv, list(sys.path)
    argparse.ArgumentParser.parse_known_args = capture
    try:
        sys.argv = [target]
        if module:  # as `python -m` from the repository root (tools/ on sys.path would shadow demo/)
            sys.path.insert(0, str(ROOT))
            top = sys.modules.get(target.split('.')[0])
            if top is not None and not hasattr(top, '__path__'):
                del sys.modules[target.split('.')[0]]
            runpy.run_module(target, run_name='__main__', alter_sys=False)
        else:
            runpy.run_path(str(ROOT / target), run_name='__main__')
    except _Captured as captured:
        _parsers[target] = captured.parser
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_known_args = real
        sys.argv, sys.path[:] = argv, path
    raise AssertionError(f'{target} never parsed its arguments')


def known_options(parser: argparse.ArgumentParser) -> set:
    """Every option string of ``parser`` and of its subcommands' parsers."""
    options = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= known_options(sub)
    return options


def check_arguments(target: str, args: list, module: bool = False) -> None:
    parser = argument_parser(target, module)
    if any(re.search(r'[<>\[\]]|\.\.\.', word) for word in args):  # a template: its flags must exist
        flags = {word.split('=')[0].strip('[]') for word in args if re.match(r'\[?--', word)}
        assert flags <= known_options(parser), (target, flags - known_options(parser))
        return
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(args)
    except SystemExit as exit:
        raise AssertionError(f'{target} {shlex.join(args)}: {stderr.getvalue()}') from exit


def check_command(words: list) -> str:
    """Check one documented command; return what kind it was."""
    program, args = words[0], words[1:]
    if program == 'make':
        targets = set(re.findall(r'^([\w-]+):', (ROOT / 'Makefile').read_text(), re.M))
        assert set(args) <= targets, f'make {args}: no such target (Makefile has {sorted(targets)})'
        return 'make'
    if program == 'tools/dist_train.sh':
        assert (ROOT / program).stat().st_mode & 0o111, f'{program} is not executable'
        subprocess.run(['bash', '-n', str(ROOT / program)], check=True)
        check_arguments('tools/train.py', [args[0], *args[2:]])  # CONFIG GPUS [train.py options]
        return 'script'
    if program == 'torchrun':
        script = next(i for i, word in enumerate(args) if word.endswith('.py'))
        program, args = 'python', args[script:]
    if program in ('python', 'python3', '.venv/bin/python'):
        if args[0] == '-m':
            if args[1] in PYTHON_MODULES_NOT_RUN:
                return 'listed'
            check_arguments(args[1], args[2:], module=True)
            return 'module'
        if args[0] == '-c':
            compile(args[1], '<python -c>', 'exec')
            return 'python -c'
        assert (ROOT / args[0]).is_file(), f'{args[0]} does not exist'
        check_arguments(args[0], args[1:])
        return 'script'
    assert program in OTHER_PROGRAMS, f'{shlex.join(words)}: add {program!r} to OTHER_PROGRAMS with a reason'
    return 'listed'


def test_every_documented_command_names_a_target_or_script_that_parses_it():
    kinds, failures = {}, []
    for name, words in shell_commands():
        try:
            kind = check_command(words)
            kinds[kind] = kinds.get(kind, 0) + 1
        except (AssertionError, SyntaxError, subprocess.CalledProcessError) as error:
            failures.append(f'{name}: {shlex.join(words)}\n    {error}')
    assert not failures, '\n'.join(failures)
    # the extraction found the documents' commands (counts of README.md and docs/ at issue 16)
    assert kinds['make'] >= 10 and kinds['script'] >= 50 and kinds['python -c'] == 3, kinds


def test_every_check_catches_what_it_should():
    with pytest.raises(AssertionError, match='no such target'):
        check_command(['make', 'demos'])
    with pytest.raises(AssertionError, match='does not exist'):
        check_command(['python', 'tools/trian.py', 'configs/demo/r2d2_tiny_shapes.py'])
    with pytest.raises(AssertionError, match='unrecognized arguments: --epocs'):
        check_command(['python', 'tools/demo.py', '--epocs', '8'])
    with pytest.raises(AssertionError, match="'--lyer'"):
        check_command(['python', 'tools/visualize_attention.py', 'IMAGE', '[--lyer', 'N]'])
    with pytest.raises(AssertionError, match='add .* to OTHER_PROGRAMS'):
        check_command(['curl', 'https://example.com'])


def test_every_python_block_compiles_and_is_run_or_listed_with_a_reason():
    seen = set()
    for name, first, body in blocks('python'):
        compile(body, f'{name}: {first}', 'exec')
        seen.add(listed(name, first))
    documents = {path.name for path in DOCS}
    stale = {key for key in (*RUN, *NOT_RUN) if key[0] in documents} - seen
    assert not stale, f'listed blocks that no document has any more: {stale}'


@pytest.fixture(scope='module')
def demo_layout(tmp_path_factory, toy_data):
    """A folder laid out as after ``make demo``: a tiny R2D2 in work_dirs/demo/model, the toy corpus."""
    from r2d2lib.registry import MODELS
    from tests.conftest import TINY_MODEL
    root = tmp_path_factory.mktemp('docs_layout')
    cfg = json.loads(json.dumps(TINY_MODEL))
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    torch.manual_seed(0)
    model = MODELS.build({**cfg, '_scope_': 'r2d2lib'})
    model.init_weights()
    model.eval().save_pretrained(root / 'work_dirs' / 'demo' / 'model')
    (root / 'data').mkdir()
    (root / 'data' / 'toy_shapes').symlink_to(toy_data)
    return root


@pytest.mark.parametrize('key', sorted(RUN), ids=lambda key: f'{key[0]}: {key[1]}')
def test_a_python_block_runs_on_a_tiny_demo_model(key, demo_layout, monkeypatch):
    (body,) = [body for name, first, body in blocks('python') if listed(name, first) == key]
    monkeypatch.chdir(demo_layout)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(body, f'{key[0]}: {key[1]}', 'exec'), {'__name__': '__docs__'})
    assert RUN[key] in out.getvalue(), out.getvalue()  # pasted into a script, it prints its results
