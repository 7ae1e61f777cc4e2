"""The full objective of Eq. 8 (R2D2Objective) and the dual encoders' (ContrastiveObjective): wiring, state,
ET, build errors."""
import copy

import pytest
import torch
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope

from r2d2lib.engine import StrictRunner
from r2d2lib.models.vlp import DualEncoderModel, R2D2Model
from r2d2lib.registry import DATASETS, MODELS
from tests.engine.test_resume import runner_cfg

init_default_scope('r2d2lib')


@pytest.fixture
def batch(toy_data, pipeline32):
    """Collated training pairs ``indices`` of the toy corpus."""
    def make(indices):
        dataset = DATASETS.build(dict(type='RetrievalDataset', data_root=str(toy_data),
                                      ann_file='train.jsonl', pipeline=pipeline32))
        return default_collate([dataset[i] for i in indices])
    return make


def no_dropout(cfg):
    """The config with every dropout off, so two forwards of the same inputs agree exactly."""
    cfg = copy.deepcopy(cfg)
    cfg['text_encoder']['config'].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    for key in ('text_image_encoder', 'image_text_encoder'):
        cfg[key]['dropout'] = 0.0
    return cfg


def build(cfg):
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def with_objective(cfg, **changes):
    """A copy of ``cfg`` with ``changes`` merged into its objective config."""
    cfg = copy.deepcopy(cfg)
    cfg['objective'].update(copy.deepcopy(changes))
    return cfg


def test_full_objective_logs_every_loss_and_trains_students_only(tiny_full_cfg, batch):
    torch.manual_seed(0)
    model = build(tiny_full_cfg)
    losses = model(**model.data_preprocessor(batch(range(8)), True), mode='loss')
    assert set(losses) == {'loss_gcpr', 'loss_fgr', 'loss_fgd', 'loss_mlm', 'temperature'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    students = [n for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n in students if model.get_parameter(n).grad is None] == []  # DDP: all used
    teacher = list(model.objective.teacher.parameters())
    assert teacher and all(not p.requires_grad and p.grad is None for p in teacher)
    assert not any(n.startswith('objective.teacher.') for n in students)
    assert {n.split('.')[1] for n in students if n.startswith('objective.')} == {'mlm_head'}


def test_teacher_follows_trainable_towers_and_projections(tiny_full_cfg):
    model = build(tiny_full_cfg)
    teachers = set(model.objective.teacher.teachers)
    assert teachers == {'image_encoder', 'text_encoder', 'text_proj', 'vision_proj'}
    cfg = copy.deepcopy(tiny_full_cfg)
    cfg['image_encoder']['frozen'] = True  # a frozen tower is its own teacher: no copy
    assert set(build(cfg).objective.teacher.teachers) == {'text_encoder', 'text_proj', 'vision_proj'}


def test_teacher_equals_students_after_init_weights_and_moves_by_the_ema_rule(tiny_full_cfg, batch):
    torch.manual_seed(0)
    model = build(tiny_full_cfg)
    teacher = model.objective.teacher
    students = model.objective.momentum_students(model)
    for name, student in students.items():
        for t, s in zip(teacher[name].state_dict().values(), student.state_dict().values()):
            assert torch.equal(t, s), name
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    losses = model(**model.data_preprocessor(batch(range(8)), True), mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    optimizer.step()
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    model.objective.momentum_update(model)
    m = teacher.momentum
    for name, student in students.items():
        for pname, s in student.named_parameters():
            key = f'teachers.{name}.{pname}'
            expected = before[key].mul(m).add(s.detach(), alpha=1 - m)
            assert torch.equal(teacher.get_parameter(key), expected), key
    assert not torch.equal(before['teachers.text_proj.weight'], teacher['text_proj'].weight)


def test_a_step_enqueues_the_teacher_features_and_moves_the_centres(tiny_full_cfg, batch):
    torch.manual_seed(0)
    model = build(tiny_full_cfg)
    data = model.data_preprocessor(batch(range(8)), True)
    inputs = data['inputs']
    tokens = model.image_encoder(inputs['images'])
    objective = model.objective
    teacher_image, teacher_text = objective.teacher_features(inputs['images'], inputs['input_ids'],
                                                             inputs['attention_mask'], tokens)
    model(**data, mode='loss')
    queue, n = objective.queue, 8
    assert int(queue.ptr) == n and queue.weights[:n].eq(1).all() and queue.weights[n:].eq(0).all()
    torch.testing.assert_close(queue.image_feats[:n], teacher_image)
    torch.testing.assert_close(queue.text_feats[:n], teacher_text)
    assert queue.image_ids[:n].tolist() == inputs['image_ids'].tolist()
    m = objective.fgd.text_centre.momentum
    torch.testing.assert_close(objective.fgd.text_centre.centre, (1 - m) * teacher_text.mean(0))
    torch.testing.assert_close(objective.fgd.image_centre.centre, (1 - m) * teacher_image.mean(0))
    model(**data, mode='loss')  # the next step decays the first batch's weights
    assert int(queue.ptr) == 4 and queue.weights[4:8].eq(0.99).all() and queue.weights[:4].eq(1).all()


def spy_cross_encoder_texts(model):
    captured = []
    original = model.cross_encode

    def spy(images, texts, masks, **kwargs):
        captured.append(texts)
        return original(images, texts, masks, **kwargs)

    model.cross_encode = spy
    return captured


@pytest.mark.parametrize('enhanced', [True, False])
def test_fgr_sees_masked_texts_with_et_and_complete_texts_without(tiny_full_cfg, batch, enhanced):
    cfg = no_dropout(with_objective(tiny_full_cfg, enhanced_training=enhanced, text_mask_ratio=0.5))
    torch.manual_seed(0)
    model = build(cfg)
    captured = spy_cross_encoder_texts(model)
    data = model.data_preprocessor(batch(range(8)), True)
    torch.manual_seed(1)
    features = model.objective.train_features(model, data['inputs'])
    assert (features.mlm_labels != -100).any()
    text_hidden = features.masked_hidden if enhanced else features.text_hidden
    torch.manual_seed(1)
    model(**data, mode='loss')
    texts, n = captured[0], 8
    assert texts.shape[0] == 3 * n  # one FGR pass; without ET, MLM adds its own text-image pass
    torch.testing.assert_close(texts[:n], text_hidden)  # positives
    torch.testing.assert_close(texts[n:2 * n], text_hidden)  # same texts with negative images
    negatives = texts[2 * n:]  # negative texts: masked (ET) or complete copies of batch texts
    assert all(any(torch.allclose(neg, row) for row in text_hidden) for neg in negatives)


def test_et_without_masking_gives_the_separate_forward_fgr_and_its_mlm_states(tiny_full_cfg, batch):
    data = batch(range(8))
    et_cfg = no_dropout(with_objective(tiny_full_cfg, text_mask_ratio=0.0))
    torch.manual_seed(0)
    et = build(et_cfg)
    separate = build(with_objective(et_cfg, enhanced_training=False))
    separate.load_state_dict(et.state_dict())
    losses = {}
    for name, model in (('et', et), ('separate', separate)):
        torch.manual_seed(3)
        losses[name] = model(**model.data_preprocessor(data, True), mode='loss')
    assert torch.equal(losses['et']['loss_fgr'], losses['separate']['loss_fgr'])
    assert losses['et']['loss_mlm'] == 0  # nothing masked: nothing to predict
    # with masking on, the MLM states of ET (positive rows of the FGR pass) equal a separate pass
    et.objective.text_mask_ratio = 0.3
    inputs = et.data_preprocessor(data, True)['inputs']
    torch.manual_seed(4)
    f = et.objective.train_features(et, inputs)
    pairs = et.objective.fgr.sampler.pairs(f.image_tokens, f.masked_hidden, f.text_mask, f.image_ids,
                                           f.image_embeds, f.text_embeds, et.temperature.tau)
    text_image, _ = et.cross_encode(pairs.image_tokens, pairs.text_hidden, pairs.text_mask)
    own_pass = et.text_image_encoder(f.masked_hidden, f.image_tokens, x_mask=f.text_mask)
    torch.testing.assert_close(text_image[:8], own_pass)
    assert pairs.labels[:8].eq(1).all()


@pytest.mark.parametrize('loss,temperature,extra', [
    ('GCPRLoss', 'Temperature', {}),
    ('InfoNCELoss', 'LogitScale', {}),
    ('MoCoLoss', 'Temperature', dict(teacher=dict(type='MomentumTeacher'),
                                     queue=dict(type='FeatureQueue', size=16, decay=1.0))),
    ('TargetDistillLoss', 'Temperature', dict(teacher=dict(type='MomentumTeacher'),
                                              fgd=dict(type='FeatureGuidedDistiller'),
                                              queue=dict(type='FeatureQueue', size=16))),
], ids=['r2d2_clip', 'clip', 'brivl', 'prd2'])
def test_dual_encoders_train_with_their_loss(tiny_model_cfg, batch, loss, temperature, extra):
    cfg = {k: v for k, v in tiny_model_cfg.items() if k not in ('text_image_encoder', 'image_text_encoder')}
    cfg.update(type='DualEncoderModel', temperature=dict(type=temperature),
               objective=dict(type='ContrastiveObjective', contrastive=dict(type=loss),
                              **copy.deepcopy(extra)))
    torch.manual_seed(0)
    model = build(cfg)
    assert type(model) is DualEncoderModel and issubclass(R2D2Model, DualEncoderModel)
    for _ in range(2):  # the second step sees a filled queue
        losses = model(**model.data_preprocessor(batch(range(8)), True), mode='loss')
        names = {k for k in losses if k.startswith('loss_')}
        expected = {f'loss_{model.objective.contrastive.name}'} | ({'loss_fgd'} if 'fgd' in extra else set())
        assert names == expected
        sum(losses[k] for k in names).backward()
        if model.objective.teacher is not None:
            model.objective.momentum_update(model)
    assert not hasattr(model, 'match_features')  # nothing to re-rank with


@pytest.mark.parametrize('change,message', [
    (dict(queue=None), 'needs objective.queue and objective.teacher'),
    (dict(contrastive=dict(type='GCPRLoss'), fgd=None), 'objective.queue is set but'),
    (dict(teacher=None, queue=None, contrastive=dict(type='GCPRLoss')),
     'objective.fgd needs objective.teacher'),
    (dict(queue=None, fgd=None, contrastive=dict(type='GCPRLoss')), 'no loss uses it'),
    (dict(weights=dict(fgd=1.0, itc=1.0)), 'itc'),
])
def test_inconsistent_distillation_configs_fail_at_build_naming_the_key(tiny_full_cfg, change, message):
    with pytest.raises((ValueError, KeyError), match=message):
        MODELS.build(with_objective(tiny_full_cfg, **change))


def test_a_model_without_objective_refuses_to_train_and_r2d2_objective_needs_cross_encoders(tiny_model_cfg,
                                                                                           batch):
    model = build({**tiny_model_cfg, 'objective': None})
    with pytest.raises(RuntimeError, match='no training objective: set model.objective'):
        model(**model.data_preprocessor(batch(range(4)), True), mode='loss')
    cfg = {k: v for k, v in tiny_model_cfg.items() if k not in ('text_image_encoder', 'image_text_encoder')}
    with pytest.raises(TypeError, match='R2D2Objective trains cross encoders'):
        MODELS.build(dict(cfg, type='DualEncoderModel'))


def test_training_a_teacher_without_the_momentum_hook_is_refused(tiny_full_cfg, toy_data, tmp_path,
                                                                 pipeline32):
    cfg = runner_cfg(tiny_full_cfg, pipeline32, toy_data, tmp_path / 'w', max_iters=1)
    cfg['custom_hooks'] = [dict(type='RandomStateHook')]
    with pytest.raises(ValueError, match='MomentumUpdateHook'):
        StrictRunner.from_cfg(cfg).train()
