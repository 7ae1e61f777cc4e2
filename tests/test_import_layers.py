"""The package's layers import one way (docs/design.md, "Layers"): no module imports from a layer above its
own, lazily inside a function or not, so there is no import circle."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'r2d2lib'

#: Sub-packages from the bottom up; a module may import from its own sub-package and from lower layers.
LAYERS = (
    ('version', 'registry'),
    ('io', ),  # checkpoint files, the config.json schema, images and texts: reads the registries only
    ('models', ),
    ('datasets', 'evaluation', 'visualization'),
    ('engine', 'deploy'),
    ('converters', ),
    ('apis', ),
    ('__init__', ),  # r2d2lib/__init__.py: the top-level exports
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def imported_modules(source: str, module: str, is_package: bool):
    """Every ``r2d2lib...`` module that ``source`` (the module named ``module``) imports, anywhere in it."""
    package = module if is_package else module.rsplit('.', 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
                yield target
                if not node.module:  # from . import x, y: the sub-modules themselves
                    yield from (f'{target}.{alias.name}' for alias in node.names)
            else:
                yield node.module


def layer_of(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


def upward_imports():
    """(importing module, imported module) pairs that go from a layer to a higher one or sideways."""
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        is_package = parts[-1] == '__init__'
        module = '.'.join(parts[:-1] if is_package else parts)
        source_layer = layer_of(module)
        assert source_layer in RANK, f'{module}: add its sub-package to LAYERS'
        for target in imported_modules(path.read_text(encoding='utf-8'), module, is_package):
            if not target or not target.startswith('r2d2lib'):
                continue
            target_layer = layer_of(target)
            if target_layer != source_layer and RANK[target_layer] >= RANK[source_layer]:
                found.append((module, target))
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_scanner_sees_relative_lazy_and_from_imports():
    source = ('from ...apis import load_model\n'
              'def f():\n    import r2d2lib.converters.building\n'
              'from . import losses, heads\n')
    found = set(imported_modules(source, 'r2d2lib.models.vlp.r2d2', is_package=False))
    assert {'r2d2lib.apis', 'r2d2lib.converters.building', 'r2d2lib.models.vlp.losses'} <= found
    assert layer_of('r2d2lib.apis.loading') == 'apis' and RANK['apis'] > RANK['models']
