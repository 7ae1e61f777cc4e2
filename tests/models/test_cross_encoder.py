"""CrossEncoder equals a plain eager implementation of the same BERT cross-attention layer."""
import math

import pytest
import torch
import torch.nn.functional as F

from r2d2lib.models.fusion import CrossEncoder


def eager_attention(attn, x, context, keep_mask):
    """softmax(QK^T / sqrt(d) + additive mask) V with the module's weights, written out by hand."""
    p = attn.self
    b, n, c = x.shape
    h = p.num_heads
    d = c // h
    q = p.query(x).view(b, n, h, d).transpose(1, 2)
    k = p.key(context).view(b, -1, h, d).transpose(1, 2)
    v = p.value(context).view(b, -1, h, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if keep_mask is not None:  # the official additive mask: 0 keep, -10000 drop
        scores = scores + (1.0 - keep_mask[:, None, None, :].float()) * -10000.0
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
    o = attn.output
    return o.LayerNorm(x + o.dense(out))


def eager_cross_encoder(enc, x, context, x_mask, context_mask):
    for layer in enc.layer:
        x = eager_attention(layer.attention, x, x, x_mask)
        x = eager_attention(layer.crossattention, x, context, context_mask)
        ffn = F.gelu(layer.intermediate.dense(x))
        x = layer.output.LayerNorm(x + layer.output.dense(ffn))
    return x


@pytest.mark.parametrize('kv_width', [48, 32])
def test_cross_encoder_matches_eager_reference(kv_width):
    torch.manual_seed(0)
    enc = CrossEncoder(width=32, kv_width=kv_width, num_layers=2, num_heads=4).eval()
    x = torch.randn(3, 7, 32)
    context = torch.randn(3, 5, kv_width)
    x_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    context_mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] + [0] * 4])
    with torch.no_grad():
        ours = enc(x, context, x_mask, context_mask)
        ref = eager_cross_encoder(enc, x, context, x_mask, context_mask)
    assert ours.shape == (3, 7, 32)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_masked_keys_do_not_influence_output():
    torch.manual_seed(0)
    enc = CrossEncoder(width=32, kv_width=32, num_layers=1, num_heads=2).eval()
    x, context = torch.randn(1, 4, 32), torch.randn(1, 6, 32)
    context_mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    changed = context.clone()
    changed[:, 3:] = 100.0
    with torch.no_grad():
        a = enc(x, context, context_mask=context_mask)
        b = enc(x, changed, context_mask=context_mask)
        c = enc(x, changed)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_parameter_names_follow_the_official_layout():
    enc = CrossEncoder(width=32, kv_width=48, num_layers=1, num_heads=2)
    names = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert names['layer.0.attention.self.query.weight'] == (32, 32)
    assert names['layer.0.crossattention.self.key.weight'] == (32, 48)
    assert names['layer.0.crossattention.output.LayerNorm.weight'] == (32,)
    assert names['layer.0.intermediate.dense.weight'] == (128, 32)
    assert names['layer.0.output.dense.weight'] == (32, 128)
    assert len(names) == 26


def test_width_not_divisible_by_heads_is_a_clear_error():
    with pytest.raises(ValueError, match='divisible'):
        CrossEncoder(width=30, num_heads=4)


def test_attention_maps_are_the_probabilities_the_forward_uses():
    """Each layer's map, applied to the values by hand, reproduces the fused cross-attention output."""
    torch.manual_seed(0)
    enc = CrossEncoder(width=32, kv_width=48, num_layers=3, num_heads=4).eval()
    x, context = torch.randn(2, 5, 32), torch.randn(2, 7, 48)
    context_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad():
        maps = enc.attention_maps(x, context, context_mask=context_mask)
        assert len(maps) == 3 and maps[0].shape == (2, 4, 5, 7)
        assert torch.allclose(maps[1].sum(-1), torch.ones(2, 4, 5))
        assert maps[2][1, :, :, 4:].abs().max() == 0  # padded image tokens get no attention
        h = x
        for layer, probs in zip(enc.layer, maps):
            h = eager_attention(layer.attention, h, h, None)
            p = layer.crossattention.self
            v = p.value(context).view(2, 7, 4, 8).transpose(1, 2)
            by_hand = layer.crossattention.output.LayerNorm(
                h + layer.crossattention.output.dense((probs @ v).transpose(1, 2).reshape(2, 5, 32)))
            fused = layer.crossattention(h, context, context_mask.bool()[:, None, None, :])
            assert torch.allclose(by_hand, fused, atol=1e-5)
            h = layer.output(layer.intermediate(fused), fused)
        assert torch.allclose(h, enc(x, context, context_mask=context_mask), atol=1e-5)


def test_context_index_projects_each_distinct_context_once_with_the_same_outputs_and_gradients():
    """FGR's pairs show n distinct images 3n times: keys / values of [U] rows indexed, not of [P] rows."""
    torch.manual_seed(0)
    enc = CrossEncoder(width=32, kv_width=24, num_layers=2, num_heads=4, ffn_width=64).eval()
    x, x_mask = torch.randn(6, 5, 32), torch.tensor([[1] * 5] * 3 + [[1, 1, 1, 0, 0]] * 3)
    source = torch.randn(2, 7, 24, requires_grad=True)
    index = torch.tensor([0, 1, 1, 0, 0, 1])
    shared = enc(x, source, x_mask=x_mask, context_index=index)
    shared.square().sum().backward()
    grads = {name: p.grad.clone() for name, p in enc.named_parameters()}
    source_grad = source.grad.clone()
    enc.zero_grad()
    source.grad = None
    copied = enc(x, source[index], x_mask=x_mask)
    copied.square().sum().backward()
    torch.testing.assert_close(shared, copied, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(source_grad, source.grad, rtol=1e-5, atol=1e-5)
    for name, p in enc.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-5, msg=name)
    # and the key projection really ran on the 2 distinct rows: 2 x 2 layers, not 6 x 2
    rows = []
    hooks = [layer.crossattention.self.key.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
             for layer in enc.layer]
    enc(x, source, x_mask=x_mask, context_index=index)
    for hook in hooks:
        hook.remove()
    assert rows == [2, 2]
