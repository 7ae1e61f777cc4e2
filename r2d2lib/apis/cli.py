"""Command-line options shared by the inference tools and the web demo: which model to load."""
from pathlib import Path

from .inferencer import PathLike, R2D2Inferencer


def add_model_arguments(parser) -> None:
    """The model options every inference tool shares (``tools/extract_features.py``, ...)."""
    group = parser.add_argument_group('model (give --model, or --checkpoint with or without --config)')
    group.add_argument('--model', help='model-zoo name, folder written by save_pretrained, or Hub repo id')
    group.add_argument('--config', help="training config (.py) of --checkpoint; default: the only .py "
                                        "file in the checkpoint's folder (a work_dir holds its config)")
    group.add_argument('--checkpoint', help='training checkpoint (.pth / .safetensors) loaded into --config')
    group.add_argument('--allow-pickle', action='store_true',
                       help='unpickle a checkpoint fully if it needs it (r2d2lib\'s own training checkpoints '
                            'do not); it can run code from the file: only for checkpoints you trust')
    group.add_argument('--device', default=None, help='cpu, cuda, cuda:1 ... (default: cuda if available)')
    group.add_argument('--batch-size', type=int, default=64, help='images, texts or pairs per forward pass')


def config_beside(checkpoint: PathLike) -> Path:
    """The config of a checkpoint in an mmengine work_dir: the single ``*.py`` file beside it."""
    folder = Path(checkpoint).parent
    configs = sorted(folder.glob('*.py'))
    if len(configs) != 1:
        found = ', '.join(p.name for p in configs) or 'none'
        raise FileNotFoundError(f'--config is needed: {folder} holds {len(configs)} .py files ({found}), '
                                'so the config of the checkpoint is not known')
    return configs[0]


def inferencer_from_args(args, progress: bool = True) -> R2D2Inferencer:
    """An :class:`R2D2Inferencer` from the options of :func:`add_model_arguments`."""
    if (args.model is None) == (args.checkpoint is None):
        raise SystemExit('give --model NAME_OR_FOLDER, or --checkpoint FILE (with --config CONFIG unless the '
                         "checkpoint's folder holds its config)")
    if args.model is not None:
        if args.config is not None:
            raise SystemExit('--config goes with --checkpoint, not with --model')
        return R2D2Inferencer(args.model, device=args.device, batch_size=args.batch_size, progress=progress)
    config = args.config or config_beside(args.checkpoint)
    return R2D2Inferencer(config, args.checkpoint, device=args.device, batch_size=args.batch_size,
                          progress=progress, allow_pickle=args.allow_pickle)
