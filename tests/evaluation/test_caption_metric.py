"""CaptionMetric: equal to pycocoevalcap called directly on the same jieba / character tokens."""
import jieba
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from r2d2lib.evaluation.metrics import caption as caption_module
from r2d2lib.evaluation.metrics.caption import CaptionMetric, java_available, tokenize_caption

SAMPLES = [
    dict(image_idx=0, pred_caption='一个穿着红色衣服的男人在草地上奔跑',
         gt_captions=['一个穿着红衣服的男人在草地上跑步', '草地上有一个男人在奔跑',
                      '男人在绿色的草地上奔跑']),
    dict(image_idx=1, pred_caption='两个女孩坐在沙发上看电视',
         gt_captions=['两个女孩在沙发上看电视', '客厅里两个女孩坐着看电视']),
    dict(image_idx=2, pred_caption='一只狗在海边',
         gt_captions=['一只黑色的狗在海边的沙滩上奔跑', '海滩上有一只狗']),
    dict(image_idx=1, pred_caption='两个女孩坐在沙发上看电视',  # padded by a distributed sampler
         gt_captions=['两个女孩在沙发上看电视', '客厅里两个女孩坐着看电视']),
]


def direct(tokenise, meteor=False):
    gts = {s['image_idx']: [tokenise(r) for r in s['gt_captions']] for s in SAMPLES}
    res = {s['image_idx']: [tokenise(s['pred_caption'])] for s in SAMPLES}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f'BLEU-{n + 1}': 100 * b for n, b in enumerate(bleu)}
    out['ROUGE-L'] = 100 * Rouge().compute_score(gts, res)[0]
    out['CIDEr-D'] = 100 * Cider().compute_score(gts, res)[0]
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor
        out['METEOR'] = 100 * Meteor().compute_score(gts, res)[0]
    return out


@pytest.mark.parametrize('tokenization,tokenise', [
    ('jieba', lambda text: ' '.join(jieba.lcut(text))),
    ('char', lambda text: ' '.join(text)),
])
def test_metric_equals_pycocoevalcap_to_the_last_digit(tokenization, tokenise):
    metric = CaptionMetric(tokenization=tokenization, meteor=False)
    metric.process(None, SAMPLES)
    scores = metric.evaluate(len(SAMPLES))
    expected = direct(tokenise)
    assert scores == {f'caption/{k}': v for k, v in expected.items()}
    assert 0 < scores['caption/BLEU-4'] < scores['caption/BLEU-1'] < 100
    assert scores['caption/CIDEr-D'] > 50  # the captions are close


def test_tokenization():
    assert tokenize_caption('一个 男人', 'char') == '一 个 男 人'
    assert tokenize_caption('一个男人在草地上', 'jieba') == ' '.join(jieba.lcut('一个男人在草地上'))
    with pytest.raises(ValueError, match='tokenization'):
        CaptionMetric(tokenization='bpe')


def test_meteor_is_reported_unavailable_without_java(monkeypatch, capsys):
    monkeypatch.setattr(caption_module, 'java_available', lambda: False)
    metric = CaptionMetric(tokenization='char')
    metric.process(None, SAMPLES[:2])
    scores = metric.evaluate(2)
    assert 'caption/METEOR' not in scores and 'caption/CIDEr-D' in scores


@pytest.mark.slow
@pytest.mark.skipif(not java_available(), reason='METEOR needs Java')
def test_meteor_equals_pycocoevalcap():
    """Two Java processes (about 10-20 s on 2 busy cores): run by make test-slow."""
    metric = CaptionMetric()
    metric.process(None, SAMPLES)
    scores = metric.evaluate(len(SAMPLES))
    expected = direct(lambda text: ' '.join(jieba.lcut(text)), meteor=True)
    assert scores == {f'caption/{k}': v for k, v in expected.items()}
    assert 0 < scores['caption/METEOR'] < 100
