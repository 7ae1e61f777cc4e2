"""Scoring generated images with an R2D2 model: R-precision, image-text similarity, a Frechet distance."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from PIL import Image
from torch import Tensor, nn

from r2d2lib.registry import METRICS


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D] and [M, D]:
    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al. 2017, Eq. 6, the formula of
    FID). The trace of the root is the sum of the square roots of the eigenvalues of
    ``S_a^(1/2) S_b S_a^(1/2)`` (symmetric, so ``eigh`` in float64)."""
    a, b = a.double(), b.double()
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f'a Frechet distance needs at least 2 samples per set, got {a.shape[0]} and '
                         f'{b.shape[0]}')
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * middle)


def r_precision(image_embeds: Tensor, text_embeds: Tensor, own: Tensor) -> float:
    """Percentage of images whose own text (index ``own[i]`` among the candidate texts) scores highest
    by cosine similarity (R-precision with R = 1 of Xu et al. 2018 (AttnGAN), over every candidate)."""
    scores = image_embeds.float() @ text_embeds.float().T
    return 100.0 * float((scores.argmax(1) == own).float().mean())


@METRICS.register_module()
class Text2ImageMetric(BaseMetric):
    """Generated images scored by an R2D2 model (``evaluator``, any r2d2lib image-text model):

    - ``R-precision``: the percentage of generated images whose own text is the best of all distinct
      test texts by embedding similarity; ``R-precision_chance`` = 100 / number of texts; with
      ``rerank_k`` > 0 and cross encoders also ``R-precision_reranked`` (the top ``rerank_k`` texts
      re-scored by the model's matching head, :meth:`R2D2Model.match_features`);
    - ``similarity``: the mean cosine similarity of a generated image and its text (x100);
    - ``frechet_r2d2``: the Frechet distance between the R2D2 image embeddings of the generated and the
      real test images (FID's formula on R2D2 features; not FID: Inception weights are not used);
    - the same R-precision and similarity of the real images (``real_`` keys), the ceiling.

    Results come from ``TextToImageDiffusion.forward(mode='predict')``: ``text``, ``generated`` and
    ``real`` (uint8 [3, H, W]).

    Args:
        evaluator: an r2d2lib model folder or Hub id (loaded with ``load_pretrained``), or a built model.
        rerank_k: re-rank the top k texts with the cross encoders (0: off).
        batch_size: images / texts encoded at a time.
    """
    default_prefix = 'text2image'

    def __init__(self, evaluator, rerank_k: int = 0, batch_size: int = 64, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if rerank_k < 0 or batch_size < 1:
            raise ValueError(f'rerank_k must be >= 0 and batch_size >= 1, got {rerank_k}, {batch_size}')
        self.evaluator, self.rerank_k, self.batch_size = evaluator, int(rerank_k), int(batch_size)
        self._model: Optional[nn.Module] = None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(dict(text=sample['text'], generated=sample['generated'].cpu(),
                                     real=sample['real'].cpu()))

    def model(self) -> nn.Module:
        """The evaluator model, loaded on first use."""
        if self._model is None:
            if isinstance(self.evaluator, nn.Module):
                self._model = self.evaluator
            else:
                from r2d2lib.io.pretrained import load_pretrained
                self._model = load_pretrained(self.evaluator, nn.Module)
        return self._model.eval()

    @torch.no_grad()
    def embed_images(self, images: List[Image.Image]) -> tuple:
        """(image tokens [N, T, C] or None, L2-normalised embeddings [N, D]) of PIL images."""
        model = self.model()
        tokens, embeds = [], []
        for start in range(0, len(images), self.batch_size):
            pixels = model.preprocess(images[start:start + self.batch_size])
            token, embed = model.image_features(pixels)
            tokens.append(token)
            embeds.append(embed)
        return torch.cat(tokens), torch.cat(embeds)

    @torch.no_grad()
    def embed_texts(self, texts: List[str]) -> tuple:
        """(hidden states, masks, L2-normalised embeddings) of texts."""
        model = self.model()
        hidden, masks, embeds = [], [], []
        for start in range(0, len(texts), self.batch_size):
            tokens = model.tokenize(texts[start:start + self.batch_size])
            states, embed = model.text_features(tokens['input_ids'], tokens['attention_mask'])
            hidden.append(states)
            masks.append(tokens['attention_mask'])
            embeds.append(embed)
        return torch.cat(hidden), torch.cat(masks), torch.cat(embeds)

    @torch.no_grad()
    def _reranked(self, image_tokens: Tensor, image_embeds: Tensor, text_hidden: Tensor, text_mask: Tensor,
                  text_embeds: Tensor, own: Tensor) -> float:
        model = self.model()
        k = min(self.rerank_k, text_embeds.shape[0])
        top = (image_embeds.float() @ text_embeds.float().T).topk(k, dim=1).indices
        hits = 0
        for i in range(top.shape[0]):
            scores = model.match_features(image_tokens[i:i + 1].expand(k, -1, -1), text_hidden[top[i]],
                                          text_mask[top[i]])
            hits += int(top[i, scores.argmax()] == own[i])
        return 100.0 * hits / top.shape[0]

    def score(self, generated: List[Image.Image], texts: List[str],
              real: Optional[List[Image.Image]] = None) -> Dict[str, float]:
        """The metrics of generated images of ``texts`` (and of the ``real`` images, if given)."""
        if len(generated) != len(texts) or not texts:
            raise ValueError(f'{len(generated)} images but {len(texts)} texts')
        candidates = sorted(set(texts))
        own = torch.tensor([candidates.index(t) for t in texts])
        text_hidden, text_mask, text_embeds = self.embed_texts(candidates)
        out: Dict[str, float] = {'R-precision_chance': 100.0 / len(candidates)}
        sets = [('', generated)] + ([('real_', real)] if real is not None else [])
        features = {}
        for name, images in sets:
            tokens, embeds = self.embed_images(images)
            features[name] = embeds
            out[f'{name}R-precision'] = r_precision(embeds, text_embeds, own)
            cosine = (embeds.float() * text_embeds[own].float()).sum(1)
            out[f'{name}similarity'] = 100.0 * float(cosine.mean())
            if self.rerank_k and hasattr(self.model(), 'match_features'):
                out[f'{name}R-precision_reranked'] = self._reranked(tokens, embeds, text_hidden, text_mask,
                                                                    text_embeds, own)
        if real is not None and len(generated) > 1:
            out['frechet_r2d2'] = frechet_distance(features[''], features['real_'])
        return out

    def compute_metrics(self, results: list) -> Dict[str, float]:
        def pil(array: Tensor) -> Image.Image:
            return Image.fromarray(np.ascontiguousarray(array.permute(1, 2, 0).numpy()))
        return self.score([pil(r['generated']) for r in results], [r['text'] for r in results],
                          [pil(r['real']) for r in results])
