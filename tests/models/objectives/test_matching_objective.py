"""MatchingObjective (R2D2Model fine-tuned for matching) and MatchingDataPreprocessor: FGR (Eq. 3) on labelled
pairs, checked by hand."""
import copy
import math

import pytest
import torch
from mmengine.registry import init_default_scope

import r2d2lib.models.losses.fgr as fgr_module
from r2d2lib.registry import MODELS

init_default_scope('r2d2lib')

TEXTS = ['红色圆形在左上', '蓝色正方形在右下', '绿色三角形在左下', '红色正方形在右上']


@pytest.fixture
def matching_cfg(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg['objective'] = dict(type='MatchingObjective')
    cfg['data_preprocessor']['type'] = 'MatchingDataPreprocessor'
    return cfg


def make_inputs(model, labels, image_ids):
    """Preprocessed inputs of len(labels) pairs: random pixels per image id, one text per pair."""
    gen = torch.Generator().manual_seed(1)
    pixels = {i: torch.randn(3, 32, 32, generator=gen) for i in sorted(set(image_ids))}
    n = len(labels)
    return dict(images=torch.stack([pixels[i] for i in image_ids]), **model.tokenize(TEXTS[:n]),
                image_ids=torch.tensor(image_ids), text_ids=torch.arange(n),
                labels=torch.tensor(labels))


def weighted_ce_by_hand(logits, labels, valid, class_weight=(1.0, 2.0)):
    """sum_i w[y_i] * -log softmax(logits_i)[y_i] / sum_i w[y_i] over valid pairs, one pair at a time."""
    num = den = 0.0
    for row, y, ok in zip(logits.tolist(), labels.tolist(), valid.tolist()):
        if not ok:
            continue
        log_norm = math.log(sum(math.exp(v) for v in row))
        w = class_weight[y]
        num += w * (log_norm - row[y])
        den += w
    return num / den


def fgr_by_hand(model, image_tokens, text_hidden, text_mask, labels, valid):
    text_image, image_text = model.itm_logits(image_tokens, text_hidden, text_mask)
    return (weighted_ce_by_hand(text_image, labels, valid)
            + weighted_ce_by_hand(image_text, labels, valid)) / 2


def test_loss_is_fgr_of_labelled_pairs_plus_positive_hard_negatives(matching_cfg, monkeypatch):
    torch.manual_seed(0)
    model = MODELS.build(matching_cfg).eval()  # eval: no dropout, so the hand pass sees the same logits
    labels, image_ids = [1, 0, 1, 0], [0, 0, 1, 2]
    inputs = make_inputs(model, labels, image_ids)
    calls = []

    def spy(similarity, query_ids, candidate_ids, temperature):
        result = real(similarity, query_ids, candidate_ids, temperature)
        calls.append(dict(similarity=similarity.clone(), query_ids=query_ids.clone(),
                          candidate_ids=candidate_ids.clone(), temperature=float(temperature), result=result))
        return result

    real = fgr_module.sample_hard_negatives
    monkeypatch.setattr(fgr_module, 'sample_hard_negatives', spy)
    losses = model(inputs, mode='loss')
    assert set(losses) == {'loss_fgr'}

    # sampled as pre-training FGR does (every pair draws, over the whole batch, at tau); the two
    # positives' draws are used
    tokens, image_embeds = model.image_features(inputs['images'])
    hidden, text_embeds = model.text_features(inputs['input_ids'], inputs['attention_mask'])
    image_call, text_call = calls
    assert image_call['query_ids'].tolist() == image_ids == text_call['query_ids'].tolist()
    assert image_call['candidate_ids'].tolist() == image_ids
    assert image_call['temperature'] == pytest.approx(0.07)
    torch.testing.assert_close(image_call['similarity'], text_embeds @ image_embeds.t())
    torch.testing.assert_close(text_call['similarity'], image_embeds @ text_embeds.t())
    neg_image, image_ok = (t[[0, 2]] for t in image_call['result'])
    neg_text, text_ok = (t[[0, 2]] for t in text_call['result'])
    assert image_ok.all() and text_ok.all()
    assert all(image_ids[j] != q for j, q in zip(neg_image.tolist(), [0, 1]))
    assert all(image_ids[j] != q for j, q in zip(neg_text.tolist(), [0, 1]))

    # by hand: 4 labelled pairs, (negative image, text_p) and (image_p, negative text) for p = 0, 2
    mask = inputs['attention_mask']
    images = torch.cat([tokens, tokens[neg_image], tokens[[0, 2]]])
    texts = torch.cat([hidden, hidden[[0, 2]], hidden[neg_text]])
    masks = torch.cat([mask, mask[[0, 2]], mask[neg_text]])
    all_labels = torch.tensor(labels + [0, 0, 0, 0])
    expected = fgr_by_hand(model, images, texts, masks, all_labels, torch.ones(8, dtype=torch.bool))
    assert losses['loss_fgr'].item() == pytest.approx(expected, rel=1e-5)


def test_without_hard_negatives_the_loss_is_the_labelled_pairs_alone(matching_cfg):
    torch.manual_seed(0)
    model = MODELS.build(dict(matching_cfg, objective=dict(type='MatchingObjective', hard_negatives=False,
                                                           weights=dict(fgr=0.5)))).eval()
    inputs = make_inputs(model, [1, 0, 0], [0, 1, 2])
    loss = model(inputs, mode='loss')['loss_fgr'].item()
    tokens = model.image_encoder(inputs['images'])
    hidden = model.text_encoder(inputs['input_ids'], inputs['attention_mask'])
    expected = fgr_by_hand(model, tokens, hidden, inputs['attention_mask'], inputs['labels'],
                           torch.ones(3, dtype=torch.bool))
    assert loss == pytest.approx(0.5 * expected, rel=1e-5)  # loss_weights apply


def test_a_positive_without_candidates_of_another_image_gets_no_negative(matching_cfg):
    torch.manual_seed(0)
    model = MODELS.build(matching_cfg).eval()
    inputs = make_inputs(model, [1, 0, 1], [5, 5, 5])  # every candidate shares the image id
    with_negatives = model(inputs, mode='loss')['loss_fgr'].item()
    model.objective.hard_negatives = False
    assert with_negatives == pytest.approx(model(inputs, mode='loss')['loss_fgr'].item(), rel=1e-6)


def test_gradients_reach_the_ranking_part_only(matching_cfg):
    torch.manual_seed(0)
    model = MODELS.build(matching_cfg).train()
    model(make_inputs(model, [1, 0, 1, 0], [0, 1, 2, 3]), mode='loss')['loss_fgr'].backward()
    grads = {name: p.grad is not None for name, p in model.named_parameters()}
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert sorted({name.split('.')[0] for name in frozen}) == ['temperature', 'text_proj', 'vision_proj']
    assert not any(grads[name] for name in frozen)
    # every trainable parameter is used (DDP without find_unused_parameters)
    assert [name for name, p in model.named_parameters() if p.requires_grad and not grads[name]] == []


def test_a_dual_encoder_or_other_loss_weights_are_refused(matching_cfg):
    dual = {k: v for k, v in matching_cfg.items() if k not in ('text_image_encoder', 'image_text_encoder')}
    with pytest.raises(TypeError, match='MatchingObjective trains cross encoders'):
        MODELS.build(dict(dual, type='DualEncoderModel'))
    with pytest.raises(KeyError, match=r"unknown keys \['mlm'\]"):
        MODELS.build(dict(matching_cfg, objective=dict(type='MatchingObjective',
                                                       weights=dict(fgr=1.0, mlm=1.0))))


def test_loss_without_labels_names_the_preprocessor(matching_cfg):
    model = MODELS.build(matching_cfg)
    inputs = make_inputs(model, [1], [0])
    del inputs['labels']
    with pytest.raises(KeyError, match='MatchingDataPreprocessor'):
        model(inputs, mode='loss')


def test_the_fine_tuned_model_exports_as_r2d2_without_its_objective(matching_cfg, tmp_path):
    from r2d2lib import R2D2Model, load_model
    model = MODELS.build(matching_cfg)
    model.save_pretrained(tmp_path / 'export')
    loaded = load_model(tmp_path / 'export')
    assert type(loaded) is R2D2Model and loaded.objective is None
    assert type(loaded.data_preprocessor).__name__ == 'MatchingDataPreprocessor'
    state = model.state_dict()
    assert loaded.state_dict().keys() == state.keys()  # MatchingObjective has no state of its own
    assert all(torch.equal(value, state[key]) for key, value in loaded.state_dict().items())
    pretrained = MODELS.build(dict(matching_cfg, objective=None))  # a pre-trained R2D2 loads strictly
    pretrained.load_state_dict(loaded.state_dict(), strict=True)


class Sample:
    def __init__(self, label, text='红色圆形'):
        self.text, self.image_idx, self.text_idx, self.img_path = text, 0, 0, 'imgs/a.jpg'
        if label is not None:
            self.label = label


def test_preprocessor_passes_labels_and_rejects_bad_ones(tiny_model_cfg):
    dp_cfg = dict(tiny_model_cfg['data_preprocessor'], type='MatchingDataPreprocessor')
    preprocessor = MODELS.build(dp_cfg)
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    out = preprocessor(dict(inputs=images, data_samples=[Sample(1), Sample(torch.tensor(0))]))
    assert out['inputs']['labels'].tolist() == [1, 0] and out['inputs']['labels'].dtype == torch.long
    assert out['inputs']['input_ids'].shape == (2, 40)
    with pytest.raises(ValueError, match=r"imgs/a\.jpg.*0 or 1, got 2"):
        preprocessor(dict(inputs=images, data_samples=[Sample(1), Sample(2)]))
    with pytest.raises(KeyError, match=r'imgs/a\.jpg has no "label"'):
        preprocessor(dict(inputs=images, data_samples=[Sample(None), Sample(1)]))
