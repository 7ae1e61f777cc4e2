"""Caption metrics of the COCO caption evaluation (pycocoevalcap) on Chinese words or characters.

BLEU-1..4, METEOR, ROUGE-L and CIDEr-D, as the AI Challenger (AIC-ICC) evaluation computes them: each
caption is cut into words by jieba (``tokenization='jieba'``) or into characters (``'char'``), the
tokens are joined by spaces, and pycocoevalcap's scorers run on those strings unchanged (its PTB
tokenizer, which is for English, is not used). pycocoevalcap's ``Cider`` is CIDEr-D (clipped n-gram
counts, Gaussian length penalty, sigma 6, x10). Scores are reported x100, as the papers print them.

METEOR runs pycocoevalcap's METEOR 1.5 jar, which needs Java (``java`` on PATH; Debian
``default-jre-headless``, installed by ``make system-deps``). Without Java the metric reports no
METEOR key and logs why, once; the other scores are unaffected.
"""
from __future__ import annotations

import re
import shutil
from typing import Any, Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from r2d2lib.registry import METRICS

TOKENIZATIONS = ('jieba', 'char')
METEOR_UNAVAILABLE = ('METEOR is unavailable: pycocoevalcap runs it with Java and no "java" is on PATH '
                      '(install Debian\'s default-jre-headless, e.g. make system-deps as root); '
                      'BLEU, ROUGE-L and CIDEr-D are reported without it')
_SPACE = re.compile(r'\s+')


def tokenize_caption(text: str, tokenization: str = 'jieba') -> str:
    """A caption as space-separated tokens: jieba words (AIC-ICC's evaluation) or characters.

    Whitespace inside the caption is dropped first (Chinese captions have none; a generated caption
    never does), so the tokens do not depend on how a caption was spaced.
    """
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f'tokenization must be one of {TOKENIZATIONS}, got {tokenization!r}')
    text = _SPACE.sub('', str(text))
    if tokenization == 'char':
        return ' '.join(text)
    import jieba
    jieba.setLogLevel(60)  # no "Building prefix dict" chatter
    return ' '.join(word for word in jieba.lcut(text) if word.strip())


def java_available() -> bool:
    """Whether pycocoevalcap's METEOR can run (it starts ``java``)."""
    return shutil.which('java') is not None


def caption_scores(references: Dict[Any, List[str]], predictions: Dict[Any, str],
                   meteor: bool = True) -> Dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (x100) of tokenised predictions against tokenised references.

    Args:
        references: image key -> its reference captions, tokens separated by spaces.
        predictions: image key -> one predicted caption, the same way.
        meteor: compute METEOR (needs Java; skipped with a logged message when there is none).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    if set(references) != set(predictions) or not references:
        raise ValueError('references and predictions must cover the same, non-empty set of images')
    gts = {key: list(refs) for key, refs in references.items()}
    res = {key: [predictions[key]] for key in references}
    empty = [key for key, refs in gts.items() if not refs]
    if empty:
        raise ValueError(f'images without reference captions: {empty[:5]}')
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f'BLEU-{n + 1}': 100.0 * float(value) for n, value in enumerate(bleu)}
    if meteor:
        if java_available():
            from pycocoevalcap.meteor.meteor import Meteor
            scorer = Meteor()
            try:
                scores['METEOR'] = 100.0 * float(scorer.compute_score(gts, res)[0])
            finally:
                del scorer
        else:
            print_log(METEOR_UNAVAILABLE, logger='current', level=30)
    scores['ROUGE-L'] = 100.0 * float(Rouge().compute_score(gts, res)[0])
    scores['CIDEr-D'] = 100.0 * float(Cider().compute_score(gts, res)[0])
    return scores


@METRICS.register_module()
class CaptionMetric(BaseMetric):
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D (x100) of generated captions (see the module doc).

    Each element given to :meth:`process` is one image:
    ``dict(image_idx=int, pred_caption=str, gt_captions=[str, ...])`` (what
    :class:`~r2d2lib.models.captioners.ImageCaptioner` returns in ``'predict'`` mode). An image seen
    twice (a distributed sampler pads the last batch) counts once.

    Keys (``caption/`` prefix by default): ``BLEU-1`` ... ``BLEU-4``, ``METEOR`` (absent without Java),
    ``ROUGE-L``, ``CIDEr-D``.

    Args:
        tokenization: ``'jieba'`` (words, as AIC-ICC's evaluation) or ``'char'`` (characters).
        meteor: compute METEOR when Java is present.
        prefix, collect_device: as mmengine's ``BaseMetric``.
    """

    default_prefix: Optional[str] = 'caption'

    def __init__(self, tokenization: str = 'jieba', meteor: bool = True, prefix: Optional[str] = 'caption',
                 collect_device: str = 'cpu') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if tokenization not in TOKENIZATIONS:
            raise ValueError(f'tokenization must be one of {TOKENIZATIONS}, got {tokenization!r}')
        self.tokenization = tokenization
        self.meteor = meteor

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep each image's index, prediction and references."""
        for sample in data_samples:
            refs = [str(ref) for ref in sample['gt_captions'] if str(ref).strip()]
            self.results.append((int(sample['image_idx']), str(sample['pred_caption']), refs))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        """Tokenise every caption and score the set with pycocoevalcap."""
        if not results:
            raise ValueError('CaptionMetric got no images')
        references, predictions = {}, {}
        for idx, pred, refs in results:
            if idx not in predictions:
                references[idx] = [tokenize_caption(ref, self.tokenization) for ref in refs]
                predictions[idx] = tokenize_caption(pred, self.tokenization)
        return caption_scores(references, predictions, meteor=self.meteor)
