"""Publish a model to the Hugging Face Hub (config.json, model.safetensors, tokenizer, model card).

    python tools/publish_to_hub.py SRC [--model NAME] [--config CFG] [--repo-id ORG/NAME]
                                   [--allow-pickle] [--dry-run] [--out DIR]
    python tools/publish_to_hub.py NAME --src CKPT_OR_DIR [...]

SRC is
- an mmengine training checkpoint (``.pth``) or a ``.safetensors`` state dict: the model is built
  from ``--config`` (default: the model-zoo model's config when ``--model`` is given) and loaded
  strictly; the momentum teacher, queues and FgD centres are left out of the export. A ``.pth`` is
  read weights-only; one that needs a full unpickle (which can run code from the file) is refused
  unless ``--allow-pickle`` is given;
- a folder written by ``save_pretrained`` or ``tools/convert/official_r2d2.py``: loaded with
  ``r2d2lib.load_model`` (strict) and written again, with the model card re-rendered.

``--model NAME`` (a model-zoo name, see ``r2d2lib.list_models()``) takes the model card's metadata
(title, paper, training data, the paper's results, citation) from its metafile entry and the repo id
from its ``Weights``; SRC itself may be such a name when ``--src`` gives the checkpoint or folder. The
card says "converted from the official checkpoint" only for a folder whose config.json records
``converted_from`` (written by ``tools/convert/*.py``); for anything else it says that the weights were
trained with r2d2lib and that the paper's results are for reference only.
``--dry-run`` writes the folder (``--out``, default ``work_dirs/publish/<repo name>``) and lists the
files that would be uploaded, with their sizes, without any network access; otherwise the model is
uploaded with ``r2d2lib.apis.push_to_hub`` (log in first: ``hf auth login``).
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('src', help='checkpoint (.pth / .safetensors), exported folder, or a model-zoo name '
                                    '(then give the checkpoint or folder with --src)')
    parser.add_argument('--src', dest='src_path', default=None,
                        help='the checkpoint or folder when SRC is a model-zoo name')
    parser.add_argument('--model', default=None,
                        help='model-zoo name whose metafile entry fills the model card')
    parser.add_argument('--config', default=None, help='config file of a checkpoint (its `model` is built)')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='unpickle a .pth fully if it holds more than tensors and plain data (runs code '
                             'from the file: only for files you trust, e.g. your own training run)')
    parser.add_argument('--repo-id', default=None,
                        help='Hub repo id ORG/NAME (default: the model\'s Weights)')
    parser.add_argument('--dry-run', action='store_true',
                        help='write the folder and list what would be uploaded; no network')
    parser.add_argument('--out', type=Path, default=None,
                        help='folder to write (default with --dry-run: work_dirs/publish/<repo name>)')
    parser.add_argument('--private', action='store_true', help='create the repo private')
    parser.add_argument('--revision', default=None, help='branch to push to (created if needed)')
    parser.add_argument('--commit-message', default=None, help='commit message of the upload')
    return parser.parse_args(argv)


def resolve_source(args: argparse.Namespace) -> Tuple[Path, Optional[str]]:
    """(checkpoint file or folder, model-zoo name or None) from SRC, --src and --model."""
    from r2d2lib.apis.model_zoo import get_model_info
    name = args.model
    if Path(args.src).exists():
        if args.src_path is not None:
            raise SystemExit(f'error: SRC {args.src} is a file or folder already; --src is for SRC = a name')
        path = Path(args.src)
    else:
        if name is not None and name != args.src:
            raise SystemExit(f'error: SRC {args.src!r} and --model {name!r} name different models')
        name = args.src
    if name is not None:
        try:
            get_model_info(name)
        except KeyError as error:
            prefix = '' if args.model else f'{args.src} is not a file or folder, and '
            raise SystemExit(f'error: {prefix}{error.args[0]}') from None
    if not Path(args.src).exists():
        if args.src_path is None:
            raise SystemExit(f'error: {name} is a model-zoo name: give the checkpoint or folder to publish '
                             'with --src')
        path = Path(args.src_path)
        if not path.exists():
            raise SystemExit(f'error: --src {path} is neither a checkpoint file nor a folder')
    return path, name


def load_model(path: Path, config: Optional[str], name: Optional[str], allow_pickle: bool = False):
    """The model to publish, from a folder or a checkpoint file with its config (:func:`r2d2lib.load_model`;
    a full unpickle only if allowed)."""
    import r2d2lib
    from r2d2lib.io import CheckpointFileError, PickleRefusedError
    if path.is_dir():
        if config is not None:
            print('warning: --config is ignored for a folder (its config.json describes the model)',
                  file=sys.stderr)
        return r2d2lib.load_model(path)
    if config is None:
        if name is None:
            raise SystemExit(f'error: {path} is a checkpoint: pass --config (the config it was trained with) '
                             'or --model (a model-zoo name, whose config is used)')
        from r2d2lib.apis.model_zoo import get_model_info
        config = get_model_info(name)['Config']
        print(f'config: {config} (of {name})')
    config_path = Path(config)
    if not config_path.is_file() and (ROOT / config).is_file():
        config_path = ROOT / config
    try:  # the checkpoint holds every weight: no pretrained towers are loaded (nothing is downloaded)
        return r2d2lib.load_model(config_path, path, allow_pickle=allow_pickle)  # strict
    except (PickleRefusedError, CheckpointFileError) as error:
        raise SystemExit(f'error: {error}') from None


def recorded_source(path: Path) -> Optional[str]:
    """The file a converter tool recorded as the source of a folder's weights (None: not converted)."""
    if not path.is_dir():
        return None
    from r2d2lib.io.pretrained import read_config
    return read_config(path).get('converted_from')


def card_metadata(name: Optional[str], repo_id: Optional[str], converted_from: Optional[str]) -> dict:
    """The model card metadata: the model-zoo entry's, official only for recorded converted weights."""
    card = {'repo_id': repo_id} if repo_id else {}
    if name is not None:
        from r2d2lib.apis.model_zoo import model_card_metadata
        card = model_card_metadata(name, repo_id=repo_id, official=converted_from is not None)
    if converted_from is not None:
        card['converted_from'] = converted_from
    return card


def list_files(folder: Path) -> List[Tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob('*') if p.is_file())


def human(size: int) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if size < 1024 or unit == 'GiB':
            return f'{size:.0f} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
        size /= 1024
    return ''


def main(argv=None) -> int:
    args = parse_args(argv)
    path, name = resolve_source(args)
    from r2d2lib.apis.model_zoo import HUB_ORG, get_model_info
    repo_id = args.repo_id or (get_model_info(name).get('Weights') if name else None)
    if repo_id is None and not args.dry_run:
        raise SystemExit(f'error: pass --repo-id ORG/NAME (e.g. {HUB_ORG}/my-r2d2)')
    model = load_model(path, args.config, name, args.allow_pickle)
    card = card_metadata(name, repo_id, recorded_source(path))
    if args.dry_run or args.out is not None:
        from r2d2lib.io import save_pretrained
        out = args.out or ROOT / 'work_dirs' / 'publish' / (repo_id or name or path.stem).split('/')[-1]
        save_pretrained(model, out, model_card=card)
        files = list_files(out)
        width = max(len(f) for f, _ in files)
        verb = 'would upload' if args.dry_run else 'wrote'
        print(f'{verb} to {repo_id or "(no --repo-id)"} from {out}:')
        for file, size in files:
            print(f'  {file:<{width}}  {human(size):>10}')
        print(f'  {len(files)} files, {human(sum(s for _, s in files))}')
        if args.dry_run:
            return 0
    from r2d2lib.io import push_to_hub
    message = args.commit_message or f'Upload {name or type(model).__name__} (r2d2lib)'
    info = push_to_hub(model, repo_id, commit_message=message, private=args.private or None,
                       revision=args.revision, model_card=card)
    print(f'pushed to https://huggingface.co/{repo_id}: {getattr(info, "commit_url", info)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
