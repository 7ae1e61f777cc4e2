"""Migrate a folder written by r2d2lib 0.1 (save_pretrained) to the current format, in place or to --out.

    python tools/migrate_pretrained.py FOLDER [--out DIR]

r2d2lib 0.1 wrote the training recipe into config.json beside the architecture: the contrastive loss
(which held the temperature), ``teacher``, ``queue``, ``fgd_loss``, ``loss_weights``, the FGR and MLM
settings, and ``R2D2MatchingModel`` for matching. Since 0.2 config.json describes the architecture only
(docs/hub.md), and the temperature is the model's ``temperature``. This tool

- keeps the architecture's arguments, drops the training ones, and turns the contrastive loss into the
  model's temperature (``GCPRLoss`` / ``TargetDistillLoss`` / ``MoCoLoss`` -> ``Temperature``,
  ``InfoNCELoss`` -> ``LogitScale``), ``R2D2MatchingModel`` into ``R2D2Model``;
- renames the weights ``contrastive_loss.temp`` / ``.logit_scale`` to ``temperature.*``;
- checks the result against the closed schema before writing anything, then loads it strictly.

The file is read as JSON data: nothing in it is imported or called. Weights are read from safetensors.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

#: Arguments of the 0.1 models that were training recipe, not architecture.
TRAINING_ARGS = ('contrastive_loss', 'fgr_loss', 'mlm_head', 'mlm_loss', 'enhanced_training', 'teacher',
                 'queue', 'fgd_loss', 'feature_centre', 'text_mask_ratio', 'patch_drop_ratio', 'loss_weights',
                 'hard_negative_temperature', 'hard_negatives')
TENSOR_RENAMES = {'contrastive_loss.temp': 'temperature.temp',
                  'contrastive_loss.logit_scale': 'temperature.logit_scale'}


def temperature_config(loss: dict) -> dict:
    """The model's temperature of a 0.1 contrastive loss config."""
    kind = loss.get('type')
    if kind == 'InfoNCELoss':
        return dict(type='LogitScale', init=loss.get('temperature', 0.07),
                    max_scale=loss.get('max_scale', 100.0))
    if kind in ('GCPRLoss', 'TargetDistillLoss', 'MoCoLoss'):
        cfg = dict(type='Temperature', init=loss.get('temperature', 0.07),
                   learnable=loss.get('learnable', kind != 'MoCoLoss'))
        if 'temperature_range' in loss:
            cfg['temperature_range'] = loss['temperature_range']
        return cfg
    raise ValueError(f'model.contrastive_loss.type: {kind!r} is not a contrastive loss of r2d2lib 0.1')


def migrate_config(config: dict) -> dict:
    """The current config.json of a 0.1 one (a new dict; the argument is left alone)."""
    from r2d2lib.version import __version__
    model = dict(config['model'])
    if 'contrastive_loss' not in model:
        raise ValueError('model has no contrastive_loss: not a folder of r2d2lib 0.1 (nothing to migrate)')
    temperature = temperature_config(model['contrastive_loss'])
    model = {k: v for k, v in model.items() if k not in TRAINING_ARGS}
    model['temperature'] = temperature
    if model.get('type') == 'R2D2MatchingModel':
        model['type'] = 'R2D2Model'
    return {**config, 'architecture': model['type'], 'r2d2lib_version': __version__, 'model': model}


def migrate(folder: Path, out: Path) -> Path:
    """Write the migrated folder to ``out`` (may be ``folder``); returns ``out``."""
    from safetensors.torch import load_file, save_file

    from r2d2lib.io.config_schema import check_pretrained_config
    config = migrate_config(json.loads((folder / 'config.json').read_text(encoding='utf-8')))
    check_pretrained_config(config, f'the migrated {folder / "config.json"}')
    state = load_file(str(folder / 'model.safetensors'))
    state = {TENSOR_RENAMES.get(key, key): value for key, value in state.items()}
    if out != folder:
        shutil.copytree(folder, out, dirs_exist_ok=True)
    text = json.dumps(config, indent=2, ensure_ascii=False) + '\n'
    (out / 'config.json').write_text(text, encoding='utf-8')
    save_file(state, str(out / 'model.safetensors'), metadata={'format': 'pt'})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder', type=Path, help='folder written by save_pretrained of r2d2lib 0.1')
    parser.add_argument('--out', type=Path, help='write the migrated folder here (default: in place)')
    args = parser.parse_args(argv)
    if not (args.folder / 'config.json').is_file():
        raise SystemExit(f'error: {args.folder} has no config.json')
    try:
        out = migrate(args.folder, args.out or args.folder)
    except ValueError as error:
        raise SystemExit(f'error: {args.folder}: {error}') from None
    import r2d2lib
    model = r2d2lib.load_model(out)  # strict: every weight has its place
    print(f'migrated {args.folder} -> {out}: a {type(model).__name__} that loads with r2d2lib.load_model')
    return 0


if __name__ == '__main__':
    sys.exit(main())
