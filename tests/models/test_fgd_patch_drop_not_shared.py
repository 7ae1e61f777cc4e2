"""Why the FgD image student re-runs the frozen ViT (docs/objective.md, "One training step").

Dropping patch tokens before the transformer layers (what FgD's student sees) is not the same as
taking the complete image's output tokens at the kept positions: every kept token of the complete
pass has attended to the dropped patches. So the student pass cannot reuse the shared tokens.
"""
import torch

from r2d2lib.models.encoders import TimmViTEncoder


def test_dropping_patches_before_the_layers_is_not_selecting_output_tokens():
    torch.manual_seed(0)
    encoder = TimmViTEncoder(model_name='vit_tiny_patch16_224', img_size=32, patch_size=8, embed_dim=32,
                             depth=2, num_heads=2, frozen=True).eval()
    images, keep = torch.randn(2, 3, 32, 32), torch.tensor([[0, 2, 3, 9], [1, 2, 7, 15]])
    dropped = encoder(images, patch_keep=keep)                 # the FgD student's input: [B, 1 + K, C]
    complete = encoder(images)                                 # the shared tokens: [B, 1 + N, C]
    selected = torch.cat([complete[:, :1], complete[:, 1:].gather(1, keep[..., None].expand(-1, -1, 32))], 1)
    assert dropped.shape == selected.shape
    assert (dropped - selected).abs().max() > 1e-2              # the [CLS] token and every kept patch differ
    # with nothing dropped the two paths are the same function: the difference is the dropping
    all_patches = torch.arange(16).expand(2, -1)
    torch.testing.assert_close(encoder(images, patch_keep=all_patches), complete)
