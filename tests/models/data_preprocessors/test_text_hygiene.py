"""tokenize: typed special tokens stay text, truncation is counted, bad texts are refused by index.

Each test fails on the tokenize of before: '[SEP]' became token 3, truncation was silent, a lone
surrogate raised tokenizers' ``TypeError: TextEncodeInput must be Union[...]`` and an empty text
was encoded as ``[CLS][SEP]``.
"""
import pytest
import torch

from r2d2lib.models.data_preprocessors import ImageTextDataPreprocessor


@pytest.fixture
def preprocessor(toy_data):
    return ImageTextDataPreprocessor(image_size=32, tokenizer=dict(vocab_file=str(toy_data / 'vocab.txt')),
                                     max_length=12)


def test_plain_text_is_cls_text_sep_padded(preprocessor):
    tok = preprocessor.tokenizer
    out = preprocessor.tokenize(['红色的圆形'])
    expected = [tok.cls_token_id, *tok.convert_tokens_to_ids(list('红色的圆形')), tok.sep_token_id]
    assert out['input_ids'][0, :7].tolist() == expected
    assert (out['input_ids'][0, 7:] == tok.pad_token_id).all()
    assert out['attention_mask'][0].tolist() == [1] * 7 + [0] * 5
    # the same ids as the tokenizer's own special-token handling for ordinary text
    reference = tok(['红色的圆形'], padding='max_length', max_length=12, return_tensors='pt')
    assert torch.equal(out['input_ids'], reference['input_ids'])


def test_typed_special_tokens_are_not_special(preprocessor):
    tok = preprocessor.tokenizer
    specials = {tok.sep_token_id, tok.mask_token_id, tok.cls_token_id, tok.pad_token_id}
    out = preprocessor.tokenize(['红[SEP]圆[MASK]', '[CLS][PAD]'])
    for row, mask in zip(out['input_ids'], out['attention_mask']):
        ids = row[mask.bool()].tolist()
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert not specials & set(ids[1:-1]), tok.convert_ids_to_tokens(ids)
    # '[', ']' are kept as characters: the first text is 8 tokens plus [CLS], [SEP] at most 12
    assert int(out['attention_mask'][0].sum()) >= 8


def test_truncation_is_counted_with_examples(preprocessor):
    out = preprocessor.tokenize(['红' * 10_000, '圆形', '蓝' * 11])
    assert out['attention_mask'].sum(1).tolist() == [12, 4, 12]
    assert out['input_ids'][0, -1] == preprocessor.tokenizer.sep_token_id
    assert preprocessor.num_truncated == 2
    assert preprocessor.truncated_examples[0].endswith('(10000 characters, 10002 tokens)')
    preprocessor.tokenize(['红' * 10])  # exactly 12 tokens: not truncated
    assert preprocessor.num_truncated == 2


@pytest.mark.parametrize('texts,error,match', [
    (['好', ''], ValueError, r'text 1 is empty'),
    (['  \t\u3000'], ValueError, r'text 0 is empty \(whitespace only\)'),
    (['好', '好', '坏\ud800'], ValueError, r'text 2 is not valid Unicode: character 1 is a lone surrogate'),
    (['好', None], TypeError, r'text 1 is a NoneType, not a str'),
])
def test_bad_texts_are_refused_naming_the_index(preprocessor, texts, error, match):
    with pytest.raises(error, match=match):
        preprocessor.tokenize(texts)


def test_the_inferencer_refuses_empty_texts(tiny_model_cfg, toy_data):
    """Through tokenize: score and search raise ValueError instead of scoring '[CLS][SEP]'."""
    from PIL import Image

    from r2d2lib.apis.inferencer import R2D2Inferencer
    from r2d2lib.registry import MODELS
    torch.manual_seed(0)
    inferencer = R2D2Inferencer(MODELS.build({**tiny_model_cfg, '_scope_': 'r2d2lib'}))
    image = Image.new('RGB', (32, 32), (200, 30, 30))
    with pytest.raises(ValueError, match='text 1 is empty'):
        inferencer.score([image, image], ['红色的圆形', ''], progress=False)
    gallery = inferencer.build_gallery(images=[image], progress=False)
    with pytest.raises(ValueError, match=r'text 0 is empty \(whitespace only\)'):
        inferencer.search(' \t', gallery, top_k=1, query_kind='text', progress=False)
    assert len(inferencer.search('红色', gallery, top_k=1, query_kind='text', progress=False)) == 1
