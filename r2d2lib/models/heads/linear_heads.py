"""Parameter-only heads of R2D2: the projections and the image-text matching (ITM) heads.

They subclass ``nn.Linear`` so their parameters keep the official checkpoint names
(``vision_proj.weight``, ``itm_head.bias``, ...). Loss logic lives in ``losses/``.
"""
from torch import nn

from r2d2lib.registry import HEADS


@HEADS.register_module()
class ProjectionHead(nn.Linear):
    """Linear projection between widths: embeddings for retrieval, image tokens for fusion.

    R2D2 uses three: ``vision_proj`` and ``text_proj`` map the [CLS] tokens to the
    768-d retrieval space (Sec. 3.1); ``image_fusion_proj`` (official name
    ``img_joint_proj``) maps every image token to
    the cross encoders' width.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)


@HEADS.register_module()
class ITMHead(nn.Linear):
    """Image-text matching head g(.) of Eq. 3: a cross encoder's first token -> 2 logits.

    Index 1 is "matched", index 0 "not matched", as in the official code.
    """

    def __init__(self, in_features: int):
        super().__init__(in_features, 2)
