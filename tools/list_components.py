"""Print every r2d2lib registry with each entry's one-line description.

    python tools/list_components.py [REGISTRY ...]
"""
import argparse
import importlib
import inspect

from mmengine.registry import Registry

from r2d2lib import registry as registries


def all_registries() -> dict:
    """Name -> Registry for every registry defined in r2d2lib.registry."""
    return {name: reg for name, reg in vars(registries).items()
            if isinstance(reg, Registry) and reg.scope == 'r2d2lib'}


def summary(obj) -> str:
    """First line of an object's docstring."""
    doc = inspect.getdoc(obj) or ''
    return doc.splitlines()[0] if doc else '(no description)'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('names', nargs='*', help='registries to show (default: all)')
    args = parser.parse_args()
    regs = all_registries()
    for name, reg in regs.items():
        if args.names and name not in args.names:
            continue
        for location in reg._locations:
            importlib.import_module(location)
        print(f'{name} ({len(reg.module_dict)})')
        width = max((len(k) for k in reg.module_dict), default=0)
        for key, obj in sorted(reg.module_dict.items()):
            print(f'  {key:<{width}}  {summary(obj)}')
        print()


if __name__ == '__main__':
    main()
