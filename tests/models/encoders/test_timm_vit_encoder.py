"""TimmViTEncoder: token-sequence contract, freezing, strict lazy loading."""
import pytest
import timm
import torch
from torch import nn

from r2d2lib.io import PretrainedLoadError
from r2d2lib.models.encoders import TimmViTEncoder
from r2d2lib.registry import ENCODERS

TINY = dict(model_name='vit_tiny_patch16_224', img_size=32, patch_size=8, embed_dim=32, depth=2,
            num_heads=2)


def tiny_timm(**overrides) -> nn.Module:
    """The plain timm model the tiny encoder wraps (``overrides`` change kwargs)."""
    kwargs = {k: v for k, v in TINY.items() if k != 'model_name'}
    return timm.create_model(TINY['model_name'], **{'num_classes': 0, **kwargs, **overrides})


def pixels(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_shape_and_equality_with_forward_features():
    enc = ENCODERS.build(dict(type='TimmViTEncoder', **TINY)).eval()
    x = pixels()
    out = enc(x)
    assert out.shape == (2, 1 + 16, 32)
    assert torch.equal(out, enc.model.forward_features(x))
    assert (enc.width, enc.image_size, enc.patch_size, enc.num_prefix_tokens) == (32, 32, 8, 1)
    assert isinstance(enc.model.norm, nn.LayerNorm)


def test_final_norm_false_and_register_tokens():
    enc = TimmViTEncoder(**TINY, final_norm=False, reg_tokens=4, global_pool='avg').eval()
    assert isinstance(enc.model.norm, nn.Identity) and isinstance(enc.model.fc_norm, nn.Identity)
    assert enc.num_prefix_tokens == 5
    assert enc(pixels()).shape == (2, 5 + 16, 32)
    enc(pixels()).sum().backward()  # every parameter is used: DDP-safe
    assert all(p.grad is not None for p in enc.parameters())


def test_model_without_class_token_is_rejected():
    with pytest.raises(ValueError, match='class token'):
        TimmViTEncoder(**TINY, class_token=False, global_pool='avg')


def test_frozen_stays_eval_without_grads_but_head_trains():
    enc = TimmViTEncoder(**TINY, frozen=True, drop_rate=0.5)
    head = nn.Linear(32, 3)
    nn.Sequential(enc, head).train()
    assert not enc.training and not enc.model.training and head.training
    assert not any(p.requires_grad for p in enc.parameters())
    x = pixels()
    out = enc(x)
    assert not out.requires_grad
    assert torch.equal(out, enc(x))  # eval: dropout off
    head(out).sum().backward()
    assert head.weight.grad is not None


def test_loading_local_checkpoint_strictly(tmp_path):
    torch.manual_seed(0)
    src = tiny_timm(num_classes=10)
    path = tmp_path / 'vit.pth'
    torch.save({'state_dict': src.state_dict()}, path)  # classifier head included
    enc = TimmViTEncoder(**TINY, pretrained=str(path), frozen=True, final_norm=False)
    assert not torch.equal(enc.model.cls_token, src.cls_token)  # nothing loaded at build
    enc.init_weights()
    own = enc.model.state_dict()
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in own.items())
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training


def test_loading_mismatched_checkpoint_raises_naming_keys(tmp_path):
    src = tiny_timm(img_size=64)
    sd = src.state_dict()
    sd['extra.weight'] = torch.zeros(1)
    del sd['blocks.1.mlp.fc2.bias']
    path = tmp_path / 'vit.pth'
    torch.save(sd, path)
    with pytest.raises(PretrainedLoadError) as err:
        TimmViTEncoder(**TINY, pretrained=str(path)).init_weights()
    for key in ('pos_embed', 'extra.weight', 'blocks.1.mlp.fc2.bias', str(path)):
        assert key in str(err.value)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        TimmViTEncoder(**TINY, pretrained=str(tmp_path / 'nope.pth')).init_weights()


def test_pretrained_true_is_loaded_only_in_init_weights(monkeypatch):
    create = timm.create_model
    donor = tiny_timm()
    calls = []

    def fake_create(name, pretrained=False, **kwargs):
        calls.append(pretrained)
        return donor if pretrained else create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, 'create_model', fake_create)
    enc = TimmViTEncoder(**TINY, pretrained=True)
    assert calls == [False]
    enc.init_weights()
    assert calls == [False, True]
    assert torch.equal(enc.model.pos_embed, donor.pos_embed)
