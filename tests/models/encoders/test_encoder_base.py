"""BaseEncoder, and the strict key checks (r2d2lib.io.checkpoint) the encoders load through."""
import pytest
import torch
from mmengine.model import BaseModule
from torch import nn

from r2d2lib.io.checkpoint import PretrainedLoadError, check_state_dict_keys, load_state_dict_strict
from r2d2lib.models.encoders import BaseEncoder, TimmViTEncoder


class ToyEncoder(BaseEncoder):
    """A Linear + Dropout encoder whose ``load_pretrained`` sets the weight to ones."""

    def __init__(self, frozen: bool = False):
        super().__init__(frozen=frozen)
        self.model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        self.loads = 0
        self._apply_frozen()

    def load_pretrained(self) -> None:
        self.loads += 1
        with torch.no_grad():
            self.model[0].weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.grad_context():
            return self.model(x)


def test_check_state_dict_keys_drops_by_prefix_and_names_the_rest():
    dropped = check_state_dict_keys(['post_layernorm.weight'], ['text_model.a', 'logit_scale'],
                                    'src', ignore_prefixes=('post_layernorm.', 'text_model.',
                                                            'logit_scale'))
    assert dropped == ['logit_scale', 'post_layernorm.weight', 'text_model.a']
    with pytest.raises(PretrainedLoadError) as err:
        check_state_dict_keys(['a.weight'], ['b.bias', 'text_model.x'], '/some/dir',
                              ignore_prefixes=('text_model.',),
                              mismatched=[('c.weight', (2, 3), (3, 3))])
    msg = str(err.value)
    assert all(s in msg for s in ('a.weight', 'b.bias', 'c.weight', '(2, 3)', '/some/dir'))
    assert 'text_model.x' not in msg


def test_error_lists_are_capped():
    with pytest.raises(PretrainedLoadError, match=r'missing keys \(100\).*and 70 more'):
        check_state_dict_keys([f'k{i:03d}' for i in range(100)], [], 'src')


def test_load_state_dict_strict_checks_shapes_before_copying():
    lin = nn.Linear(2, 3)
    good = {'weight': torch.ones(3, 2), 'bias': torch.ones(3), 'head.weight': torch.ones(1)}
    assert load_state_dict_strict(lin, good, 'src', ignore_prefixes=('head.',)) == ['head.weight']
    assert torch.equal(lin.weight, torch.ones(3, 2))
    with pytest.raises(PretrainedLoadError, match=r'weight \(checkpoint \(2, 2\)'):
        load_state_dict_strict(lin, {'weight': torch.zeros(2, 2), 'bias': torch.zeros(3)}, 'src')
    assert torch.equal(lin.bias, torch.ones(3))  # nothing copied


def test_frozen_encoder_ignores_train_and_runs_without_grad():
    enc = ToyEncoder(frozen=True)
    parent = nn.Sequential(enc, nn.Linear(4, 1)).train()
    assert not enc.training and not enc.model[1].training and parent[1].training
    x = torch.ones(2, 4)
    assert torch.equal(enc(x), enc(x))
    assert not enc(x.clone().requires_grad_()).requires_grad  # no_grad, not just frozen params
    parent(x).sum().backward()
    assert parent[1].weight.grad is not None
    trainable = ToyEncoder().train()
    assert trainable.model[1].training and trainable(x).requires_grad


def test_init_weights_from_a_parent_loads_then_refreezes():
    enc = ToyEncoder(frozen=True)
    parent = BaseModule()
    parent.enc = enc
    enc.model[0].weight.requires_grad_(True)  # even if someone unfroze it meanwhile
    parent.init_weights()
    assert enc.loads == 1 and torch.equal(enc.model[0].weight, torch.ones(4, 4))
    assert not any(p.requires_grad for p in enc.parameters())


def test_timm_encoder_pretrained_through_parent_init(tmp_path):
    kwargs = dict(model_name='vit_tiny_patch16_224', img_size=32, patch_size=8, embed_dim=32,
                  depth=1, num_heads=2)
    src = TimmViTEncoder(**kwargs)
    torch.save(src.model.state_dict(), tmp_path / 'w.pth')
    parent = BaseModule()
    parent.enc = TimmViTEncoder(**kwargs, pretrained=str(tmp_path / 'w.pth'))
    parent.init_weights()
    assert torch.equal(parent.enc.model.pos_embed, src.model.pos_embed)
