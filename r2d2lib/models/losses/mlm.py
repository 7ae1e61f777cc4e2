"""Masked language modelling loss (L_MLM, Sec. 3.2)."""
import torch.nn.functional as F
from torch import Tensor, nn

from r2d2lib.models.utils import IGNORE_INDEX
from r2d2lib.registry import LOSSES


@LOSSES.register_module()
class MLMLoss(nn.Module):
    """Cross-entropy of the masked tokens, averaged over the masked positions only.

    Positions labelled ``IGNORE_INDEX`` (-100: every token that was not masked)
    contribute nothing. A batch without any masked token (possible with short
    texts) gives 0, connected to the graph, instead of the NaN of an empty mean.
    """

    name = 'mlm'

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """``logits [..., V]`` and ``labels [...]`` (token ids, or -100 where not masked)."""
        logits, labels = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
        total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction='sum')
        return total / (labels != IGNORE_INDEX).sum().clamp(min=1)
