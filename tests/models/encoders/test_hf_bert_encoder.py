"""HFBertEncoder: equality with BertModel, masking, gradients, strict lazy loading."""
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertConfig, BertForPreTraining, BertModel

from r2d2lib.io import PretrainedLoadError
from r2d2lib.models.encoders import HFBertEncoder
from r2d2lib.registry import ENCODERS

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=37, max_position_embeddings=64)


def tiny_config(attn: str = 'sdpa', **overrides) -> BertConfig:
    """TINY with the encoder's (chinese-roberta-wwm-ext) defaults for the other fields."""
    return BertConfig(**{**TINY, 'layer_norm_eps': 1e-12, 'hidden_act': 'gelu', **overrides},
                      attn_implementation=attn)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [3, 7] and a mask with padding on two rows."""
    ids = torch.randint(1, 99, (3, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def test_matches_bert_model_with_padding():
    torch.manual_seed(0)
    ref = BertModel(tiny_config(), add_pooling_layer=False).eval()
    enc = ENCODERS.build(dict(type='HFBertEncoder', config=TINY)).eval()
    enc.model.load_state_dict(ref.state_dict())
    ids, mask = batch()
    out = enc(ids, mask)
    assert out.shape == (3, 7, 32)
    assert torch.equal(out, ref(input_ids=ids, attention_mask=mask).last_hidden_state)
    assert (enc.width, enc.vocab_size) == (32, 99)
    assert enc.model.pooler is None


def test_default_config_is_chinese_roberta_wwm_ext():
    enc = HFBertEncoder(config=dict(num_hidden_layers=1))
    c = enc.model.config
    assert (c.vocab_size, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (
        21128, 768, 12, 3072)
    assert (c.max_position_embeddings, c.type_vocab_size, c.layer_norm_eps, c.hidden_act) == (
        512, 2, 1e-12, 'gelu')
    assert c._attn_implementation == 'sdpa'


def test_sdpa_matches_eager_on_unmasked_tokens():
    sdpa = HFBertEncoder(config=TINY).eval()
    eager = HFBertEncoder(config=TINY, attn_implementation='eager').eval()
    eager.load_state_dict(sdpa.state_dict())
    ids, mask = batch()
    keep = mask.bool()
    torch.testing.assert_close(sdpa(ids, mask)[keep], eager(ids, mask)[keep], atol=1e-5,
                               rtol=1e-5)


def test_padding_does_not_change_unmasked_tokens():
    enc = HFBertEncoder(config=TINY).eval()
    ids, mask = batch()
    short = enc(ids[2:, :2], mask[2:, :2])
    torch.testing.assert_close(enc(ids, mask)[2:, :2], short, atol=1e-5, rtol=1e-5)


def test_gradients_flow_when_not_frozen_and_not_when_frozen():
    enc = HFBertEncoder(config=TINY).train()
    enc(*batch()).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())

    frozen = HFBertEncoder(config=TINY, frozen=True)
    head = nn.Linear(32, 2)
    nn.ModuleList([frozen, head]).train()
    assert not frozen.model.training and not any(p.requires_grad for p in frozen.parameters())
    out = frozen(*batch())
    assert not out.requires_grad
    head(out).sum().backward()
    assert head.weight.grad is not None


@pytest.mark.parametrize('kind', ['bert', 'pretraining'])
def test_local_dir_round_trip(tmp_path, kind):
    torch.manual_seed(0)
    if kind == 'bert':
        ref = BertModel(tiny_config(), add_pooling_layer=True)  # pooler keys are dropped
        ref.save_pretrained(tmp_path)
    else:  # keys under ``bert.``, plus ``cls.`` heads and the pooler
        full = BertForPreTraining(tiny_config())
        full.save_pretrained(tmp_path)
        assert any(k.startswith('cls.') for k in load_file(tmp_path / 'model.safetensors'))
        ref = full.bert
    enc = HFBertEncoder(config=TINY, pretrained=str(tmp_path))
    ref_sd = {k: v for k, v in ref.state_dict().items() if not k.startswith('pooler.')}

    def loaded() -> bool:
        own = enc.model.state_dict()
        return set(own) == set(ref_sd) and all(torch.equal(v, ref_sd[k]) for k, v in own.items())

    assert not loaded()  # nothing loaded at build
    enc.init_weights()
    assert loaded()


def test_unexpected_and_missing_keys_raise(tmp_path):
    BertModel(tiny_config(), add_pooling_layer=False).save_pretrained(tmp_path)
    sd = load_file(tmp_path / 'model.safetensors')
    sd['encoder.layer.0.surprise.weight'] = torch.zeros(2)
    del sd['encoder.layer.1.output.dense.bias']
    save_file(sd, tmp_path / 'model.safetensors', metadata={'format': 'pt'})
    with pytest.raises(PretrainedLoadError) as err:
        HFBertEncoder(config=TINY, pretrained=str(tmp_path)).init_weights()
    for key in ('encoder.layer.0.surprise.weight', 'encoder.layer.1.output.dense.bias',
                str(tmp_path)):
        assert key in str(err.value)


def test_wrong_vocab_raises_naming_key(tmp_path):
    BertModel(tiny_config(vocab_size=50), add_pooling_layer=False).save_pretrained(tmp_path)
    with pytest.raises(PretrainedLoadError, match='embeddings.word_embeddings.weight'):
        HFBertEncoder(config=TINY, pretrained=str(tmp_path)).init_weights()


def test_build_never_touches_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise RuntimeError('from_pretrained called')

    monkeypatch.setattr(BertModel, 'from_pretrained', no_network)
    enc = HFBertEncoder(config=TINY, pretrained='hfl/chinese-roberta-wwm-ext', frozen=True)
    with pytest.raises(RuntimeError, match='from_pretrained called'):
        enc.init_weights()
