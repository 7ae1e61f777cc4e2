"""build_tokenizer: a vocabulary file or a Hub name, and loud failures instead of an all-[UNK] tokenizer."""
import pytest

from r2d2lib.models.data_preprocessors.image_text import build_tokenizer


def test_vocab_file_tokenizer_splits_chinese_characters(toy_data):
    tokenizer = build_tokenizer(dict(vocab_file=str(toy_data / 'vocab.txt')))
    ids = tokenizer('红色的圆形')['input_ids']
    assert len(ids) == 7 and tokenizer.unk_token_id not in ids  # [CLS] 5 characters [SEP]
    assert tokenizer.mask_token_id is not None


def test_a_hub_tokenizer_missing_offline_is_an_error_not_a_five_token_vocabulary(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path))  # an empty cache
    with pytest.raises(OSError):
        build_tokenizer(dict(name_or_path='hfl/chinese-roberta-wwm-ext'))


def test_both_sources_at_once_is_an_error(toy_data):
    with pytest.raises(KeyError, match='both'):
        build_tokenizer(dict(name_or_path='hfl/chinese-roberta-wwm-ext',
                             vocab_file=str(toy_data / 'vocab.txt')))
