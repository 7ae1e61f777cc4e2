"""timm ViT image encoder: any timm ViT with a class token as a token-sequence encoder."""
import os
from typing import Any

import torch
from torch import Tensor, nn

from r2d2lib.io.checkpoint import load_checkpoint_file, load_state_dict_strict, unwrap_state_dict
from r2d2lib.models.utils import keep_patch_tokens
from r2d2lib.registry import ENCODERS

from .base import BaseEncoder

# Pooling/classifier modules that ``forward_features`` never uses; they are removed
# (unused parameters break DDP) and their checkpoint keys dropped by name.
HEAD_MODULES: tuple[str, ...] = ('head', 'fc_norm', 'attn_pool')


def _side(size: int | tuple[int, ...] | None) -> int | tuple[int, ...] | None:
    """A square ``(s, s)`` size as ``s``; other sizes unchanged."""
    if isinstance(size, (tuple, list)) and len(set(size)) == 1:
        return int(size[0])
    return tuple(size) if isinstance(size, list) else size


def _strip_unused(model: nn.Module, final_norm: bool) -> None:
    """Remove the head modules (and the final norm unless ``final_norm``) of ``model``."""
    for name in HEAD_MODULES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module) and not isinstance(module, nn.Identity):
            # timm checks ``attn_pool is not None``; the other two become identities.
            setattr(model, name, None if name == 'attn_pool' else nn.Identity())
    if not final_norm:
        model.norm = nn.Identity()


@ENCODERS.register_module()
class TimmViTEncoder(BaseEncoder):
    """timm Vision Transformer returning ``forward_features``: all tokens, CLS first.

    Built by ``timm.create_model(model_name, pretrained=False, num_classes=0,
    **model_kwargs)`` as ``self.model``; the pooling modules (``fc_norm``,
    ``attn_pool``) are removed since only the token sequence is used. The output is
    ``[B, P+N, C]`` with ``P = num_prefix_tokens`` prefix tokens before the N patch
    tokens: the CLS token first, then any distillation or register tokens (e.g.
    ``reg_tokens=4`` gives P = 5). Models without a class token are rejected.

    Args:
        model_name: timm model name (``'vit_base_patch16_224'``).
        pretrained: ``False``; ``True`` for timm's pretrained weights of
            ``model_name`` (hub or cache, honouring ``HF_HUB_OFFLINE``); or the path
            of a local checkpoint file (``.pth``/``.safetensors``, timm key names).
            Loaded strictly by :meth:`init_weights`, never at build; ``head.``,
            ``fc_norm.`` and ``attn_pool.`` keys (and ``norm.`` without the final
            norm) are dropped by name, any other mismatch raises.
        frozen: freeze the encoder (see :class:`BaseEncoder`).
        final_norm: keep the final ``norm``; ``False`` replaces it with
            ``nn.Identity`` for towers whose tokens are used before it (CLIP style).
        gradient_checkpointing: recompute each block in the backward pass (timm's
            ``set_grad_checkpointing``; the patch-dropping path checkpoints too).
        init_cfg: mmengine initialisation config.
        **model_kwargs: passed to ``timm.create_model`` (``img_size``, ``depth``, ...).

    Attributes:
        width: token width C. image_size, patch_size: int when square, else (H, W).
        num_prefix_tokens: P, the tokens before the patch tokens (CLS first).
        num_patches: N.
    """

    def __init__(self, model_name: str = 'vit_base_patch16_224', pretrained: bool | str = False,
                 frozen: bool = False, final_norm: bool = True, gradient_checkpointing: bool = False,
                 init_cfg: dict | list[dict] | None = None, **model_kwargs: Any):
        super().__init__(frozen=frozen, gradient_checkpointing=gradient_checkpointing, init_cfg=init_cfg)
        self.model_name = model_name
        self.model_kwargs = model_kwargs
        self.final_norm = final_norm
        self.pretrained = pretrained
        import timm  # on first use: `import r2d2lib` does not import timm
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0, **model_kwargs)
        if getattr(self.model, 'cls_token', None) is None:
            raise ValueError(f'timm model {model_name!r} has no class token; TimmViTEncoder '
                             'returns tokens with CLS first')
        _strip_unused(self.model, final_norm)
        patch_embed = self.model.patch_embed
        self.width: int = self.model.embed_dim
        self.image_size = _side(patch_embed.img_size)
        self.patch_size = _side(patch_embed.patch_size)
        self.num_prefix_tokens: int = self.model.num_prefix_tokens
        self.num_patches: int = patch_embed.num_patches
        self._finish_build()

    def _enable_gradient_checkpointing(self) -> None:
        self.model.set_grad_checkpointing(True)

    @property
    def dropped_prefixes(self) -> tuple[str, ...]:
        """Checkpoint keys dropped by name: the head modules (and ``norm.``)."""
        norm = () if self.final_norm else ('norm.',)
        return tuple(f'{name}.' for name in HEAD_MODULES) + norm

    def load_pretrained(self) -> None:
        """Strictly load timm's weights (``pretrained=True``) or a local file (a path)."""
        if self.pretrained is True:
            source = f'timm pretrained {self.model_name!r}'
            import timm
            loaded = timm.create_model(self.model_name, pretrained=True, num_classes=0,
                                       **self.model_kwargs)
            _strip_unused(loaded, self.final_norm)
            state_dict = loaded.state_dict()
        elif isinstance(self.pretrained, (str, os.PathLike)) and self.pretrained:
            source = os.fspath(self.pretrained)
            if not os.path.isfile(source):
                raise FileNotFoundError(f'TimmViTEncoder checkpoint file not found: {source!r}')
            checkpoint = load_checkpoint_file(source)  # weights-only (r2d2lib.io's trust policy)
            for key in ('state_dict', 'model'):  # timm's and DeiT's wrappers
                if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
                    checkpoint = checkpoint[key]
                    break
            state_dict = unwrap_state_dict(checkpoint, 'state_dict', 'a timm ViT state dict', source)
        else:
            return
        load_state_dict_strict(self.model, state_dict, source, self.dropped_prefixes)

    def forward(self, pixel_values: Tensor, patch_keep: Tensor | None = None) -> Tensor:
        """Image tokens ``[B, P+N, C]`` (CLS first) of images ``[B, 3, H, W]``.

        ``patch_keep`` ``[B, K]``: indices of the patches to keep (after the position
        embedding, before the blocks); the output then has ``P+K`` tokens.
        """
        return self.run_frozen(self._tokens, pixel_values, patch_keep)

    def _tokens(self, pixel_values: Tensor, patch_keep: Tensor | None) -> Tensor:
        if patch_keep is None:
            return self.model.forward_features(pixel_values)
        model = self.model
        tokens = model._pos_embed(model.patch_embed(pixel_values))
        tokens = keep_patch_tokens(tokens, patch_keep, self.num_prefix_tokens)
        tokens = model.norm_pre(model.patch_drop(tokens))
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            from timm.models import checkpoint_seq
            tokens = checkpoint_seq(model.blocks, tokens)
        else:
            tokens = model.blocks(tokens)
        return model.norm(tokens)
