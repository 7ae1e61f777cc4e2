"""The tokenizer of a converted model, as the converter tools configure and check it."""
from pathlib import Path


def set_tokenizer(model_cfg: dict, tokenizer: str | Path | None) -> dict:
    """Configure the tools' ``--tokenizer`` in ``model_cfg`` (in place; returned): a WordPiece
    ``vocab.txt`` file, or a tokenizer folder or Hub id. ``None`` keeps the config's."""
    if tokenizer is not None:
        key = 'vocab_file' if Path(tokenizer).is_file() else 'name_or_path'
        dp_cfg = model_cfg.get('data_preprocessor') or dict(type='ImageTextDataPreprocessor')
        model_cfg['data_preprocessor'] = dict(dp_cfg, tokenizer={key: str(tokenizer)})
    return model_cfg


def check_tokenizer(model_cfg: dict, vocabulary: str) -> None:
    """Build the configured tokenizer now (a converted model is saved with its files), or raise a hint.

    ``vocabulary`` names the tokenizer the user should pass with ``--tokenizer``.
    """
    from r2d2lib.registry import MODELS
    preprocessor = MODELS.build(model_cfg.get('data_preprocessor') or dict(type='ImageTextDataPreprocessor'))
    try:
        preprocessor.tokenizer  # noqa: B018 (built on first access)
    except OSError as error:
        raise OSError(f'the tokenizer {preprocessor.tokenizer_cfg} cannot be built: {error}\n'
                      '  The converted model is saved with its tokenizer files: pass --tokenizer with a '
                      f'local tokenizer folder or vocab.txt ({vocabulary}).') from None
