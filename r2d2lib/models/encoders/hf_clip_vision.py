"""CLIP ViT image encoder (transformers ``CLIPVisionModel``): R2D2's image tower."""
import torch
from torch import Tensor, nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from r2d2lib.models.utils import keep_patch_tokens
from r2d2lib.registry import ENCODERS

from .base import BaseEncoder, load_hf_pretrained

# openai/clip-vit-base-patch16's vision tower (the ViT-B/16 that R2D2 uses).
CLIP_VIT_B16_CONFIG: dict = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    num_channels=3, image_size=224, patch_size=16, hidden_act='quick_gelu',
    layer_norm_eps=1e-5, attention_dropout=0.0, projection_dim=512)

# Checkpoint keys dropped by name: the unused post_layernorm (both the transformers
# 5.x flat layout and the 4.x ``vision_model.`` one) and, for a full CLIPModel
# checkpoint, the text tower, the projections and the logit scale.
DROPPED_PREFIXES: tuple[str, ...] = (
    'post_layernorm.', 'vision_model.post_layernorm.', 'text_model.', 'text_projection.',
    'visual_projection.', 'logit_scale')

# Config fields that shapes cannot check; a pretrained checkpoint must agree on them.
SAME_CONFIG: tuple[str, ...] = ('hidden_act', 'layer_norm_eps', 'num_attention_heads')


@ENCODERS.register_module()
class HFCLIPVisionEncoder(BaseEncoder):
    """CLIP ViT image encoder returning every token before ``post_layernorm``.

    Wraps ``transformers.CLIPVisionModel`` as ``self.model``. The output is
    ``last_hidden_state``: embeddings -> ``pre_layrnorm`` -> transformer layers; in
    transformers 5.x ``post_layernorm`` only normalises the pooled CLS state, which
    R2D2 (like the official code) does not use, so it is replaced by ``nn.Identity``
    (an unused parameter would break DDP without ``find_unused_parameters``).

    ``cls_post_layernorm=True`` keeps ``post_layernorm`` and applies it to the CLS
    token only: token 0 is then transformers' ``pooler_output`` (the CLS state after
    the final LayerNorm) and the patch tokens stay ``last_hidden_state``. This is the
    image feature of CLIP-style models whose projection reads the normalised CLS
    (OpenAI CLIP's and Chinese-CLIP's ``ln_post(x[:, 0]) @ proj``), so their towers
    import exactly (see :mod:`r2d2lib.converters.chinese_clip`). The default (False)
    is R2D2's: every token before ``post_layernorm``, which is not built.

    Args:
        config: ``CLIPVisionConfig`` fields, merged over the ViT-B/16 values of
            ``openai/clip-vit-base-patch16`` (``None``: exactly those).
        pretrained: local directory or hub id of a ``CLIPVisionModel`` or a full
            ``CLIPModel`` checkpoint, loaded strictly by :meth:`init_weights` (never
            at build). The text tower, projections and ``post_layernorm`` (unless
            ``cls_post_layernorm``) are dropped by name; any other missing,
            unexpected or wrong-shaped key raises.
        frozen: freeze the encoder (see :class:`BaseEncoder`).
        attn_implementation: ``'sdpa'`` (default: fused attention, no attention
            matrix stored) or ``'eager'`` (or any other transformers attention backend,
            ``'flash_attention_2'`` on a GPU with flash-attn installed); overrides one
            given in ``config``.
        gradient_checkpointing: recompute each ViT layer in the backward pass
            (transformers' ``gradient_checkpointing_enable``, non-reentrant).
        cls_post_layernorm: apply ``post_layernorm`` to the CLS token (see above); it
            is then built, trained and loaded from ``pretrained`` instead of dropped.
        init_cfg: mmengine initialisation config.

    Attributes:
        width: token width C. image_size, patch_size: input and patch side.
        num_prefix_tokens: 1 (the CLS token precedes the N patch tokens).
        num_patches: N.
    """

    def __init__(self, config: dict | None = None, pretrained: str | None = None,
                 frozen: bool = False, attn_implementation: str = 'sdpa',
                 cls_post_layernorm: bool = False, gradient_checkpointing: bool = False,
                 init_cfg: dict | list[dict] | None = None):
        super().__init__(frozen=frozen, gradient_checkpointing=gradient_checkpointing, init_cfg=init_cfg)
        cfg = {**CLIP_VIT_B16_CONFIG, **(config or {}),
               'attn_implementation': attn_implementation}
        self.model = CLIPVisionModel(CLIPVisionConfig(**cfg))
        self.cls_post_layernorm = cls_post_layernorm
        if not cls_post_layernorm:
            # transformers 4.x nests the tower as ``vision_model``; 5.x is flat.
            self.tower.post_layernorm = nn.Identity()
        self.pretrained = pretrained
        self.width: int = self.model.config.hidden_size
        self.image_size: int = self.model.config.image_size
        self.patch_size: int = self.model.config.patch_size
        self.num_prefix_tokens: int = 1
        self.num_patches: int = (self.image_size // self.patch_size) ** 2
        self._finish_build()

    def _enable_gradient_checkpointing(self) -> None:
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(use_reentrant=False))

    @property
    def tower(self) -> nn.Module:
        """The vision transformer (``embeddings``, ``pre_layrnorm``, ``encoder``)."""
        return getattr(self.model, 'vision_model', self.model)

    def load_pretrained(self) -> None:
        """Strictly load ``pretrained`` (CLIPVisionModel or CLIPModel checkpoint)."""
        if self.pretrained:
            dropped = tuple(p for p in DROPPED_PREFIXES
                            if not (self.cls_post_layernorm and 'post_layernorm' in p))
            load_hf_pretrained(self.model, CLIPVisionModel, self.pretrained,
                               ignore_prefixes=dropped, same_config=SAME_CONFIG)

    def forward(self, pixel_values: Tensor, patch_keep: Tensor | None = None) -> Tensor:
        """Image tokens ``[B, 1+N, C]`` (CLS first) of images ``[B, 3, H, W]``.

        ``patch_keep`` ``[B, K]``: indices of the patches to keep (after the position
        embedding, before the transformer); the output then has ``1+K`` tokens.
        """
        return self.run_frozen(self._tokens, pixel_values, patch_keep)

    def _tokens(self, pixel_values: Tensor, patch_keep: Tensor | None) -> Tensor:
        tower = self.tower
        if patch_keep is None:
            tokens = self.model(pixel_values=pixel_values).last_hidden_state
        else:
            tokens = keep_patch_tokens(tower.embeddings(pixel_values), patch_keep, 1)
            tokens = tower.encoder(inputs_embeds=tower.pre_layrnorm(tokens)).last_hidden_state
        if self.cls_post_layernorm:
            tokens = torch.cat([tower.post_layernorm(tokens[:, :1]), tokens[:, 1:]], dim=1)
        return tokens
