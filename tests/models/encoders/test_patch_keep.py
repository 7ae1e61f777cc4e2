"""patch_keep in HFCLIPVisionEncoder and TimmViTEncoder: identity when all kept, internals by hand."""
import pytest
import torch

from r2d2lib.models.encoders import HFCLIPVisionEncoder, TimmViTEncoder

CLIP_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 image_size=32, patch_size=8)
TIMM_TINY = dict(model_name='vit_tiny_patch16_224', img_size=32, patch_size=8, depth=2, embed_dim=32,
                 num_heads=2)
KEEP = torch.tensor([[0, 3, 5, 6, 10, 15], [1, 2, 4, 8, 9, 12]])  # 6 of 16 patches, differing rows


def build(kind):
    torch.manual_seed(0)
    if kind == 'clip':
        return HFCLIPVisionEncoder(config=CLIP_TINY).eval()
    if kind == 'timm':
        return TimmViTEncoder(**TIMM_TINY).eval()
    return TimmViTEncoder(**TIMM_TINY, reg_tokens=2).eval()


def pixels(batch=2, seed=1):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def gather_loop(tokens, keep, prefix):
    return torch.stack([torch.cat([tokens[b, :prefix], tokens[b, prefix + keep[b]]])
                        for b in range(tokens.shape[0])])


def by_hand(kind, enc, x, keep):
    """The encoder's internals on the gathered tokens (torch.no_grad: the reference only)."""
    if kind == 'clip':
        model = enc.model
        tokens = gather_loop(model.embeddings(x), keep, 1)
        return model.encoder(inputs_embeds=model.pre_layrnorm(tokens)).last_hidden_state
    model = enc.model
    tokens = gather_loop(model._pos_embed(model.patch_embed(x)), keep, enc.num_prefix_tokens)
    return model.norm(model.blocks(model.norm_pre(tokens)))


KINDS = ['clip', 'timm', 'timm_reg']
PREFIX = dict(clip=1, timm=1, timm_reg=3)


@pytest.mark.parametrize('kind', KINDS)
def test_keeping_every_patch_is_bit_identical_to_no_patch_keep(kind):
    enc = build(kind)
    x = pixels()
    with torch.no_grad():
        full = enc(x)
        kept = enc(x, patch_keep=torch.arange(16).expand(2, -1))
    assert full.shape == (2, PREFIX[kind] + 16, 32)
    assert torch.equal(kept, full)


@pytest.mark.parametrize('kind', KINDS)
def test_subset_shape_and_equality_with_the_internals_by_hand(kind):
    enc = build(kind)
    assert (enc.num_prefix_tokens, enc.num_patches) == (PREFIX[kind], 16)
    x = pixels()
    with torch.no_grad():
        out = enc(x, patch_keep=KEEP)
        want = by_hand(kind, enc, x, KEEP)
        full = enc(x)
    assert out.shape == (2, PREFIX[kind] + 6, 32)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    # dropping patches changes what the kept tokens attend to
    assert not torch.allclose(out[:, 0], full[:, 0], atol=1e-4)


@pytest.mark.parametrize('kind', KINDS)
def test_dropped_patches_do_not_influence_the_output(kind):
    enc = build(kind)
    x = pixels()
    dropped = x.clone()
    dropped[0, :, 8:16, 8:16] = 5.0  # patch 5 (row 1, column 1): kept by image 0
    dropped[1, :, 8:16, 8:16] = 5.0  # ... but dropped by image 1
    dropped[1, :, 24:32, 24:32] = -5.0  # patch 15: dropped by image 1
    with torch.no_grad():
        out, changed = enc(x, patch_keep=KEEP), enc(dropped, patch_keep=KEEP)
    torch.testing.assert_close(changed[1], out[1], rtol=0, atol=1e-6)
    assert not torch.allclose(changed[0], out[0], atol=1e-3)


@pytest.mark.parametrize('kind', KINDS)
def test_patch_keep_trains_the_encoder(kind):
    enc = build(kind).train()
    enc(pixels(), patch_keep=KEEP).sum().backward()
    grads = {n: p.grad for n, p in enc.named_parameters()}
    assert all(g is not None for g in grads.values())
    pos = 'model.embeddings.position_embedding.weight' if kind == 'clip' else 'model.pos_embed'
    pos_grad = grads[pos].reshape(-1, 32) if kind == 'clip' else grads[pos][0]
    # neither image keeps patch 7 or 11: their position embeddings get no gradient
    assert pos_grad.shape == (PREFIX[kind] + 16, 32)  # prefix tokens first, then the patches
    first_patch = PREFIX[kind]
    for patch in (7, 11):
        assert pos_grad[first_patch + patch].abs().sum() == 0
    assert pos_grad[first_patch + 0].abs().sum() > 0


def test_frozen_encoder_with_patch_keep_has_no_graph():
    enc = HFCLIPVisionEncoder(config=CLIP_TINY, frozen=True)
    assert not enc(pixels(), patch_keep=KEEP).requires_grad


@pytest.mark.parametrize('image_size, patch_size, patches', [(32, 8, 16), (48, 8, 36), (32, 16, 4)])
def test_num_patches(image_size, patch_size, patches):
    clip = HFCLIPVisionEncoder(config=dict(CLIP_TINY, image_size=image_size, patch_size=patch_size))
    timm_enc = TimmViTEncoder(**dict(TIMM_TINY, img_size=image_size, patch_size=patch_size))
    x = torch.randn(1, 3, image_size, image_size)
    for enc in (clip, timm_enc):
        assert enc.num_patches == patches
        with torch.no_grad():
            assert enc.eval()(x).shape == (1, enc.num_prefix_tokens + patches, 32)
