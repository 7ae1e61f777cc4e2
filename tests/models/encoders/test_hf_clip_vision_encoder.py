"""HFCLIPVisionEncoder: equality with CLIPVisionModel, freezing, strict lazy loading."""
import inspect

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

from r2d2lib.io import PretrainedLoadError
from r2d2lib.models.encoders import HFCLIPVisionEncoder
from r2d2lib.registry import ENCODERS

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            patch_size=8, image_size=32)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, vocab_size=100, max_position_embeddings=16,
                 bos_token_id=0, eos_token_id=1, pad_token_id=1)


def reference(attn: str = 'sdpa', **overrides) -> CLIPVisionModel:
    """A tiny CLIPVisionModel with the encoder's defaults for the fields TINY leaves out."""
    torch.manual_seed(0)
    cfg = {**TINY, 'hidden_act': 'quick_gelu', 'layer_norm_eps': 1e-5, **overrides}
    return CLIPVisionModel(CLIPVisionConfig(**cfg, attn_implementation=attn)).eval()


def pixels(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def same_weights(encoder: HFCLIPVisionEncoder, ref: CLIPVisionModel) -> bool:
    ref_sd = ref.state_dict()
    own = encoder.model.state_dict()
    return (set(ref_sd) - set(own) == {'post_layernorm.weight', 'post_layernorm.bias'}
            and all(torch.equal(v, ref_sd[k]) for k, v in own.items()))


def test_matches_clip_vision_model_last_hidden_state():
    ref = reference()
    enc = HFCLIPVisionEncoder(config=TINY).eval()
    enc.model.load_state_dict(ref.state_dict(), strict=False)
    x = pixels()
    out = enc(x)
    assert out.shape == (2, 1 + 16, 32)
    assert torch.equal(out, ref(pixel_values=x).last_hidden_state)
    assert (enc.width, enc.image_size, enc.patch_size, enc.num_prefix_tokens) == (32, 32, 8, 1)
    assert isinstance(enc.model.post_layernorm, nn.Identity)
    assert not any('post_layernorm' in k for k in enc.state_dict())


def test_default_config_is_vit_b16_and_registered():
    assert inspect.signature(HFCLIPVisionEncoder).parameters['config'].default is None
    enc = ENCODERS.build(dict(type='HFCLIPVisionEncoder', config=dict(num_hidden_layers=1)))
    c = enc.model.config
    assert (c.hidden_size, c.patch_size, c.image_size, c.intermediate_size) == (768, 16, 224, 3072)
    assert (c.hidden_act, c.layer_norm_eps, c.num_attention_heads) == ('quick_gelu', 1e-5, 12)
    assert c._attn_implementation == 'sdpa'


def test_sdpa_matches_eager():
    sdpa = HFCLIPVisionEncoder(config=TINY).eval()
    eager = HFCLIPVisionEncoder(config=TINY, attn_implementation='eager').eval()
    eager.load_state_dict(sdpa.state_dict())
    x = pixels()
    torch.testing.assert_close(sdpa(x), eager(x), atol=1e-5, rtol=1e-5)


def test_frozen_stays_eval_without_grads_but_head_trains():
    enc = HFCLIPVisionEncoder(config=TINY, frozen=True)
    parent = nn.ModuleDict(dict(enc=enc, head=nn.Linear(32, 3))).train()
    assert not any(p.requires_grad for p in enc.parameters())
    assert not enc.model.training and not enc.training and parent['head'].training
    out = enc(pixels())
    assert not out.requires_grad
    parent['head'](out).sum().backward()
    assert parent['head'].weight.grad is not None


def test_not_frozen_gets_gradients():
    enc = HFCLIPVisionEncoder(config=TINY).train()
    enc(pixels()).sum().backward()
    assert enc.model.training
    assert all(p.grad is not None for p in enc.parameters())


@pytest.mark.parametrize('kind', ['vision', 'clip'])
def test_pretrained_loading_from_vision_and_full_clip_dirs(tmp_path, kind):
    if kind == 'vision':
        ref = reference()
        ref.save_pretrained(tmp_path)
    else:
        torch.manual_seed(0)
        full = CLIPModel(CLIPConfig(vision_config=TINY, text_config=TINY_TEXT, projection_dim=16))
        full.save_pretrained(tmp_path)
        ref = full.vision_model
    enc = HFCLIPVisionEncoder(config=TINY, pretrained=str(tmp_path), frozen=True)
    assert not same_weights(enc, ref)  # nothing loaded at build
    enc.init_weights()
    assert same_weights(enc, ref)
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training


def test_loading_wrong_shape_raises_naming_key(tmp_path):
    reference(image_size=64).save_pretrained(tmp_path)
    enc = HFCLIPVisionEncoder(config=TINY, pretrained=str(tmp_path))
    with pytest.raises(PretrainedLoadError, match='embeddings.position_embedding.weight'):
        enc.init_weights()


def test_loading_corrupt_checkpoint_names_every_bad_key(tmp_path):
    reference().save_pretrained(tmp_path)
    sd = load_file(tmp_path / 'model.safetensors')
    sd['encoder.layers.0.mlp.fc1.weight'] = torch.zeros(65, 32)
    del sd['encoder.layers.1.mlp.fc2.bias']
    sd['extra.weight'] = torch.zeros(3)
    save_file(sd, tmp_path / 'model.safetensors', metadata={'format': 'pt'})
    enc = HFCLIPVisionEncoder(config=TINY, pretrained=str(tmp_path))
    with pytest.raises(PretrainedLoadError) as err:
        enc.init_weights()
    for key in ('encoder.layers.0.mlp.fc1.weight', 'encoder.layers.1.mlp.fc2.bias',
                'extra.weight', str(tmp_path)):
        assert key in str(err.value)


def test_loading_mismatched_activation_raises(tmp_path):
    reference(hidden_act='gelu').save_pretrained(tmp_path)
    with pytest.raises(PretrainedLoadError, match='hidden_act'):
        HFCLIPVisionEncoder(config=TINY, pretrained=str(tmp_path)).init_weights()


def test_build_never_touches_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise RuntimeError('from_pretrained called')

    monkeypatch.setattr(CLIPVisionModel, 'from_pretrained', no_network)
    enc = HFCLIPVisionEncoder(config=TINY, pretrained='openai/clip-vit-base-patch16')
    with pytest.raises(RuntimeError, match='from_pretrained called'):
        enc.init_weights()


def test_loading_transformers_4_layout(tmp_path):
    """A transformers 4.x CLIPVisionModel .bin: ``vision_model.`` keys and position_ids."""
    ref = reference()
    sd = {f'vision_model.{k}': v for k, v in ref.state_dict().items()}
    sd['vision_model.embeddings.position_ids'] = torch.arange(17)[None]
    torch.save(sd, tmp_path / 'pytorch_model.bin')
    ref.config.save_pretrained(tmp_path)
    enc = HFCLIPVisionEncoder(config=TINY, pretrained=str(tmp_path))
    enc.init_weights()
    assert same_weights(enc, ref)
