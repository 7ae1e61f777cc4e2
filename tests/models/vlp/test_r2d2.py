"""R2D2Model: losses, inference surface, hard negatives inside FGR, build-time checks."""
import copy

import pytest
import torch
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from PIL import Image

from r2d2lib.registry import DATASETS, MODELS

init_default_scope('r2d2lib')

@pytest.fixture
def batch(toy_data, pipeline32):
    """Collated pairs ``indices`` of the toy corpus split."""
    def make(indices, split='train'):
        dataset = DATASETS.build(dict(type='RetrievalDataset', data_root=str(toy_data),
                                      ann_file=f'{split}.jsonl', pipeline=pipeline32))
        return default_collate([dataset[i] for i in indices])
    return make


def test_loss_mode_returns_named_losses_and_trains_every_parameter(tiny_model_cfg, batch):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg)
    data = model.data_preprocessor(batch(range(8)), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_gcpr', 'loss_fgr', 'temperature'}
    # untrained: GCPR near log(batch), FGR near log(2) for balanced weighted classes
    assert 1.0 < losses['loss_gcpr'].item() < 4.0 and 0.4 < losses['loss_fgr'].item() < 1.2
    (losses['loss_gcpr'] + losses['loss_fgr']).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []  # DDP needs every trainable parameter used


def test_frozen_image_encoder_gets_no_gradient(tiny_model_cfg, batch):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg['image_encoder']['frozen'] = True
    model = MODELS.build(cfg).train()
    assert not model.image_encoder.model.training
    data = model.data_preprocessor(batch(range(4)), training=True)
    losses = model(**data, mode='loss')
    (losses['loss_gcpr'] + losses['loss_fgr']).backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert model.vision_proj.weight.grad is not None


def test_fgr_pairs_use_negatives_with_other_image_ids(tiny_model_cfg, batch):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg)
    data = model.data_preprocessor(batch(range(8)), training=True)
    inputs = data['inputs']
    ids = inputs['image_ids']
    assert len(set(ids.tolist())) == 4  # 2 captions per image: same-id pairs in the batch
    f = model.objective.train_features(model, inputs)
    tokens, hidden = f.image_tokens, f.text_hidden
    pairs = model.objective.fgr.sampler.pairs(tokens, hidden, f.text_mask, f.image_ids, f.image_embeds,
                                              f.text_embeds, model.temperature.tau)
    captured = dict(images=pairs.image_tokens, texts=pairs.text_hidden)
    n = ids.numel()
    assert pairs.image_tokens.shape[0] == pairs.text_hidden.shape[0] == pairs.text_mask.shape[0] == 3 * n
    assert pairs.labels.tolist() == [1] * n + [0] * (2 * n) and pairs.valid.all()
    # the negative image of text i is a token sequence of an image with another id
    for i in range(n):
        neg = captured['images'][n + i]
        match = [j for j in range(n) if torch.equal(tokens[j], neg)]
        assert match and all(ids[j] != ids[i] for j in match)
        neg_text = captured['texts'][2 * n + i]
        match = [j for j in range(n) if torch.equal(hidden[j], neg_text)]
        assert match and all(ids[j] != ids[i] for j in match)


@pytest.mark.parametrize('fixed', [None, 5.0])
def test_hard_negatives_are_drawn_at_the_configured_temperature(tiny_model_cfg, monkeypatch, fixed):
    """Default: the model's contrastive tau (official); ``hard_negative_temperature``: that fixed value."""
    import r2d2lib.models.losses.fgr as fgr_module
    seen = []
    original = fgr_module.sample_hard_negatives

    def spy(similarity, query_ids, candidate_ids, temperature):
        seen.append(float(temperature))
        return original(similarity, query_ids, candidate_ids, temperature)

    monkeypatch.setattr(fgr_module, 'sample_hard_negatives', spy)
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg['objective']['fgr']['hard_negative_temperature'] = fixed
    model = MODELS.build(cfg)
    ids, embeds = torch.arange(4), torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    model.objective.fgr.sampler.draw(ids, embeds, embeds, model.temperature.tau)
    tau = float(model.temperature.tau.detach())
    assert seen == [fixed or tau] * 2 and fixed != tau


def test_hard_negative_temperature_must_be_positive(tiny_model_cfg):
    with pytest.raises(ValueError, match='hard_negative_temperature'):
        fgr = dict(type='FGRLoss', hard_negative_temperature=0.0)
        MODELS.build(dict(tiny_model_cfg, objective=dict(type='R2D2Objective', fgr=fgr)))


def test_inference_surface(tiny_model_cfg, toy_data):
    model = MODELS.build(tiny_model_cfg).eval()
    images = [Image.open(toy_data / 'images' / f'test_00000{i}.png') for i in range(3)]
    pixels = model.preprocess(images)
    assert pixels.shape == (3, 3, 32, 32) and pixels.dtype == torch.float32
    tokens = model.tokenize(['左上角有一个红色的大圆形', '右下角', '蓝色的小三角形'])
    assert tokens['input_ids'].shape == (3, 40)
    assert tokens['input_ids'][1, :4].tolist()[0] == model.data_preprocessor.tokenizer.cls_token_id
    with torch.no_grad():
        img, txt = model.encode_image(pixels), model.encode_text(**tokens)
        probs = model.match(pixels, **tokens)
        ti, it = model.itm_logits(model.image_encoder(pixels),
                                  model.text_encoder(**tokens), tokens['attention_mask'])
    assert img.shape == txt.shape == (3, 24)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    assert probs.shape == (3,) and ((probs >= 0) & (probs <= 1)).all()
    torch.testing.assert_close(probs, (ti.softmax(-1)[:, 1] + it.softmax(-1)[:, 1]) / 2)


def test_preprocess_equals_the_evaluation_pipeline(tiny_model_cfg, batch):
    model = MODELS.build(tiny_model_cfg)
    data = batch([0], split='test')
    from_pipeline = model.data_preprocessor(data)['inputs']['images']
    image = Image.open(data['data_samples'][0].img_path)
    torch.testing.assert_close(model.preprocess([image]), from_pipeline, rtol=0, atol=0)


def test_predict_returns_what_the_retrieval_loop_needs(tiny_model_cfg, batch):
    model = MODELS.build(tiny_model_cfg).eval()
    out = model.val_step(batch(range(4), split='test'))
    assert set(out) == {'image_embeds', 'text_embeds', 'image_tokens', 'text_hidden', 'text_mask',
                        'image_idx', 'text_idx'}
    assert out['image_tokens'].shape == (4, 17, 48) and out['text_hidden'].shape == (4, 40, 32)
    assert out['image_idx'].tolist() == [0, 0, 1, 1]


def test_mismatched_cross_encoder_width_names_the_key(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg['text_image_encoder']['kv_width'] = 32
    with pytest.raises(ValueError, match='text_image_encoder.kv_width'):
        MODELS.build(cfg)


def test_loss_weights_scale_the_named_losses_and_reject_unknown_names(tiny_model_cfg, batch):
    data = batch(range(4))
    losses = {}
    for weights in (None, dict(fgr=0.5, gcpr=2.0)):
        cfg = copy.deepcopy(tiny_model_cfg)
        cfg['objective']['weights'] = weights
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        torch.manual_seed(1)
        losses[weights is None] = model(**model.data_preprocessor(data, True), mode='loss')
    plain, weighted = losses[True], losses[False]
    torch.testing.assert_close(weighted['loss_fgr'], 0.5 * plain['loss_fgr'])
    torch.testing.assert_close(weighted['loss_gcpr'], 2.0 * plain['loss_gcpr'])
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg['objective']['weights'] = dict(mlm=1.0)  # no mlm_head in this config: no MLM loss to weight
    with pytest.raises(KeyError, match='mlm'):
        MODELS.build(cfg)
