"""The zero-shot classification loops: prompts embedded once, CLIP's ensembling, top-1/top-5 equal
to a by-hand computation on the tiny R2D2."""
import pytest
import torch
import torch.nn.functional as F

from r2d2lib.engine.runners import ZeroShotTestLoop, ZeroShotValLoop
from tests.engine.test_retrieval_loop import build_tiny_r2d2, toy_records
from tests.evaluation.loop_helpers import RecordDataset, make_runner, one_thread, strip

single_thread = pytest.fixture(autouse=True)(one_thread)

CLASSES = ['圆形', '三角形', '正方形', '红色', '蓝色', '绿色', '黄色']
TEMPLATES = ['一个{}。', '{}的图片', '这是{}']


def classification_dataset(toy_data, pipeline32, classes=CLASSES, templates=TEMPLATES):
    images = {}
    for record in toy_records(toy_data, multi_positive=False):
        images.setdefault(record['image_idx'], record['img_path'])
    records = [dict(img_path=path, gt_label=(3 * i) % len(classes)) for i, path in images.items()]
    pipeline = [dict(step) for step in pipeline32[:-1]] + [dict(type='PackInputs')]
    return RecordDataset(records, pipeline=pipeline,
                         metainfo=dict(classes=list(classes), templates=list(templates)))


@torch.no_grad()
def by_hand(model, dataset):
    """Each prompt embedded alone; class = normalise(mean of normalised prompts); top-k by hand."""
    classes, templates = dataset.metainfo['classes'], dataset.metainfo['templates']
    class_embeds = []
    for name in classes:
        prompts = []
        for template in templates:
            tokens = model.data_preprocessor.tokenize([template.replace('{}', name)])
            prompts.append(F.normalize(model.encode_text(tokens['input_ids'],
                                                         tokens['attention_mask'])[0], dim=0))
        class_embeds.append(F.normalize(sum(prompts) / len(prompts), dim=0))
    class_embeds = torch.stack(class_embeds)
    top1 = top5 = 0
    for i in range(len(dataset)):
        sample = dataset[i]
        image = model.encode_image(model.data_preprocessor.normalize(sample['inputs'][None]))[0]
        order = (class_embeds @ image).argsort(descending=True).tolist()
        label = int(sample['data_samples'].gt_label)
        top1 += order[0] == label
        top5 += label in order[:5]
    return {'top1': 100 * top1 / len(dataset), 'top5': 100 * top5 / len(dataset)}


def test_tiny_r2d2_zero_shot_equals_by_hand(tmp_path, toy_data, tiny_model_cfg, pipeline32):
    model = build_tiny_r2d2(tiny_model_cfg)
    dataset = classification_dataset(toy_data, pipeline32)
    expected = by_hand(model, dataset)
    calls = []
    encode_text = model.encode_text
    model.encode_text = lambda ids, mask: (calls.append(len(ids)), encode_text(ids, mask))[1]
    runner = make_runner(tmp_path, model, dataset, loop='ZeroShot', metric=dict(type='ZeroShotAccuracy'),
                         batch_size=4)
    assert isinstance(runner.val_loop, ZeroShotValLoop)
    metrics = strip(runner.val(), 'zero_shot')
    assert metrics == pytest.approx(expected)
    assert 0 < metrics['top5'] < 100
    assert sum(calls) == len(CLASSES) * len(TEMPLATES)  # every prompt embedded exactly once
    assert isinstance(runner.test_loop, ZeroShotTestLoop)
    assert strip(runner.test(), 'zero_shot') == pytest.approx(expected)


def test_missing_templates_is_a_clear_error(tmp_path, toy_data, tiny_model_cfg, pipeline32):
    dataset = classification_dataset(toy_data, pipeline32)
    dataset._metainfo.pop('templates')
    runner = make_runner(tmp_path, build_tiny_r2d2(tiny_model_cfg), dataset, loop='ZeroShot',
                         metric=dict(type='ZeroShotAccuracy'))
    with pytest.raises(KeyError, match="no 'templates'"):
        runner.val()
