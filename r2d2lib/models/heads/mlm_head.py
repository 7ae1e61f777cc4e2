"""Masked-language-modelling head: a token's hidden state -> scores over the vocabulary."""
import torch.nn.functional as F
from torch import Tensor, nn

from r2d2lib.registry import HEADS


@HEADS.register_module()
class MLMHead(nn.Module):
    """BERT's prediction head: dense -> GELU -> LayerNorm -> linear decoder to the vocabulary.

    R2D2 predicts the masked tokens from the text-image cross encoder's output at
    the masked positions (Sec. 3.2). The head has parameters only; the loss is
    :class:`~r2d2lib.models.losses.MLMLoss`.

    Args:
        in_features: width of the cross encoder.
        vocab_size: number of tokens (21,128 for chinese-roberta-wwm-ext).
        layer_norm_eps: epsilon of the LayerNorm (BERT: 1e-12).
    """

    def __init__(self, in_features: int, vocab_size: int, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(in_features, in_features)
        self.layer_norm = nn.LayerNorm(in_features, eps=layer_norm_eps)
        self.decoder = nn.Linear(in_features, vocab_size)

    def forward(self, hidden: Tensor) -> Tensor:
        """Hidden states ``[..., H]`` -> vocabulary logits ``[..., V]``."""
        return self.decoder(self.layer_norm(F.gelu(self.dense(hidden))))
