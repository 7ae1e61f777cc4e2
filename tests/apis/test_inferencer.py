"""R2D2Inferencer: values against direct model calls, batching invariance, hand-checked re-ranking."""
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from r2d2lib.apis import R2D2Inferencer, SearchResult
from r2d2lib.apis.inferencer import DEFAULT_TEMPLATES, Gallery
from r2d2lib.evaluation.ranking import chunked_topk
from r2d2lib.registry import MODELS


def _build(cfg):
    torch.manual_seed(0)
    model = MODELS.build({**cfg, '_scope_': 'r2d2lib'})
    model.init_weights()
    return model.eval()


@pytest.fixture
def model(tiny_model_cfg):
    return _build(tiny_model_cfg)


@pytest.fixture
def inferencer(model):
    return R2D2Inferencer(model, batch_size=4)


@pytest.fixture
def toy(toy_data):
    """Test image paths (8) and their first captions."""
    records = [json.loads(line) for line in (toy_data / 'test_objects.jsonl').read_text().splitlines()]
    return [str(toy_data / r['image_path']) for r in records], [r['captions'][0] for r in records]


def _mixed_size_images(paths):
    """The toy images at different sizes and modes (the inferencer resizes each)."""
    sizes = [(32, 32), (50, 20), (17, 64), (64, 64), (33, 31), (40, 40), (90, 45), (32, 32)]
    return [Image.open(p).convert('RGB').resize(s) for p, s in zip(paths, sizes)]


@torch.no_grad()
def test_encoders_equal_direct_model_calls_bit_exact(model, inferencer, toy):
    paths, texts = toy
    images = [Image.open(p).convert('RGB') for p in paths]
    direct = model.encode_image(model.preprocess(images))
    tokens = model.tokenize(texts)
    direct_text = model.encode_text(tokens['input_ids'], tokens['attention_mask'])
    assert torch.equal(inferencer.encode_images(paths, batch_size=len(paths)), direct)
    assert torch.equal(inferencer.encode_texts(texts, batch_size=len(texts)), direct_text)
    assert torch.allclose(direct.norm(dim=-1), torch.ones(len(paths)))


@torch.no_grad()
def test_batch_size_does_not_change_results(inferencer, toy):
    paths, texts = toy
    images = _mixed_size_images(paths)
    for fn, items in ((inferencer.encode_images, images), (inferencer.encode_texts, texts)):
        one, seven = fn(items, batch_size=1), fn(items, batch_size=7)
        assert one.shape == (8, 24)
        assert torch.allclose(one, seven, atol=1e-6, rtol=0)
    assert torch.allclose(inferencer.score(images, texts, batch_size=1),
                          inferencer.score(images, texts, batch_size=7), atol=1e-6, rtol=0)


@torch.no_grad()
def test_score_is_the_models_match_and_broadcasts(model, inferencer, toy):
    paths, texts = toy
    images = [Image.open(p).convert('RGB') for p in paths]
    tokens = model.tokenize(texts)
    direct = model.match(model.preprocess(images), tokens['input_ids'], tokens['attention_mask'])
    assert torch.equal(inferencer.score(paths, texts, batch_size=8), direct)
    # one image with N texts == that image repeated; N images with one text likewise
    assert torch.allclose(inferencer.score(paths[2], texts), inferencer.score([paths[2]] * 8, texts),
                          atol=1e-6, rtol=0)
    assert torch.allclose(inferencer.score(paths, texts[5]), inferencer.score(paths, [texts[5]] * 8),
                          atol=1e-6, rtol=0)
    assert ((direct > 0) & (direct < 1)).all()
    with pytest.raises(ValueError, match='3 images and 2 texts'):
        inferencer.score(paths[:3], texts[:2])


def test_dual_encoder_cannot_score_but_searches(tiny_model_cfg, toy):
    paths, texts = toy
    cfg = {k: v for k, v in tiny_model_cfg.items() if k not in ('text_image_encoder', 'image_text_encoder')}
    dual = R2D2Inferencer(_build({**cfg, 'type': 'DualEncoderModel', 'objective': None}))
    with pytest.raises(TypeError, match='dual encoder'):
        dual.score(paths[0], texts[0])
    gallery = dual.build_gallery(images=paths)
    assert [r.index for r in dual.search(texts[0], gallery, top_k=3)] == \
        (gallery.embeddings @ dual.encode_texts(texts[0])[0]).argsort(descending=True)[:3].tolist()
    with pytest.raises(TypeError, match='dual encoder'):
        dual.search(texts[0], gallery, top_k=3, rerank_k=3)


def test_search_by_embedding_and_reranked(inferencer, toy):
    paths, texts = toy
    gallery = inferencer.build_gallery(images=paths)
    assert gallery.kind == 'images' and len(gallery) == 8
    query = texts[1]
    sims = gallery.embeddings @ inferencer.encode_texts(query)[0]
    plain = inferencer.search(query, gallery, top_k=5)
    assert [r.index for r in plain] == sims.argsort(descending=True)[:5].tolist()
    assert all(r.rerank_score is None and r.score == r.embedding_score for r in plain)
    assert [r.item for r in plain] == [paths[r.index] for r in plain]

    # re-rank the top 4 by hand: probability (score()) + similarity, then the 5th in embedding order
    reranked = inferencer.search(query, gallery, top_k=5, rerank_k=4)
    top4 = sims.argsort(descending=True)[:4].tolist()
    probs = inferencer.score([paths[i] for i in top4], query)
    final = {i: float(p + sims[i]) for i, p in zip(top4, probs)}
    expected = sorted(top4, key=lambda i: -final[i]) + [plain[4].index]
    assert [r.index for r in reranked] == expected
    for r, p in zip(reranked[:4], [float(probs[top4.index(r.index)]) for r in reranked[:4]]):
        assert r.rerank_score == pytest.approx(p, abs=1e-6)
        assert r.score == pytest.approx(final[r.index], abs=1e-6)
    assert reranked[4].rerank_score is None

    # image query over texts, re-ranked
    text_gallery = inferencer.build_gallery(texts=texts)
    results = inferencer.search(Path(paths[3]), text_gallery, top_k=8, rerank_k=8)
    probs = inferencer.score(paths[3], texts)
    assert sorted(r.index for r in results) == list(range(8))
    for r in results:
        assert r.rerank_score == pytest.approx(float(probs[r.index]), abs=1e-6)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    with pytest.raises(ValueError, match='cannot be re-ranked'):
        inferencer.search(texts[0], text_gallery, rerank_k=2)


def test_rerank_order_hand_computed(inferencer, monkeypatch):
    """sims 0.9/0.8/0.7/0.6 + probs 0.1/0.5/0.9/0.0 -> 1.0/1.3/1.6/0.6: re-ranked c, b, a; d stays last."""
    probs = {'a': 0.1, 'b': 0.5, 'c': 0.9, 'd': 0.0}
    monkeypatch.setattr(inferencer, '_pair_matcher',
                        lambda q, qk, gk, *_: (lambda items: torch.tensor([probs[i] for i in items])))
    results = inferencer.rerank('query', ['a', 'b', 'c', 'd'], torch.tensor([0.9, 0.8, 0.7, 0.6]),
                                indices=torch.tensor([10, 11, 12, 13]), rerank_k=3)
    assert [(r.item, r.index) for r in results] == [('c', 12), ('b', 11), ('a', 10), ('d', 13)]
    assert [r.score for r in results] == pytest.approx([1.6, 1.3, 1.0, 0.6])
    assert results[0] == SearchResult('c', 12, pytest.approx(0.7), pytest.approx(0.9), pytest.approx(1.6))
    assert results[3].rerank_score is None


@torch.no_grad()
def test_classify_prompt_ensembling(model, inferencer, toy):
    paths, _ = toy
    classes = ['红色的圆形', '蓝色的正方形', '绿色的三角形']
    templates = ['{}', '一张{}的照片。']
    prompts = [t.format(c) for c in classes for t in templates]
    embeds = inferencer.encode_texts(prompts).view(3, 2, -1)
    by_hand = torch.nn.functional.normalize(embeds.mean(1), dim=-1)  # embeds are unit vectors already
    assert torch.allclose(inferencer.class_embeddings(classes, templates), by_hand, atol=1e-7)
    sims = inferencer.encode_images(paths[:2]) @ by_hand.t()
    probs = (sims / model.temperature.tau.detach()).softmax(-1)
    labels = inferencer.classify(paths[:2], classes, templates, top_k=2)
    assert len(labels) == 2 and len(labels[0]) == 2
    for row, label in enumerate(labels):
        order = probs[row].argsort(descending=True)[:2].tolist()
        assert [s.index for s in label] == order and [s.label for s in label] == [classes[i] for i in order]
        assert label[0].probability == pytest.approx(float(probs[row, order[0]]), abs=1e-6)
        assert label[0].similarity == pytest.approx(float(sims[row, order[0]]), abs=1e-6)
    assert len(inferencer.classify(paths[0], classes)[0]) == 3  # top_k clipped; default templates
    assert all('{}' in t for t in DEFAULT_TEMPLATES)
    with pytest.raises(ValueError, match='no "{}"'):
        inferencer.classify(paths[0], classes, templates=['一张照片'])


def test_sources_pretrained_folder_and_config_checkpoint(model, tmp_path, toy, tiny_model_cfg):
    paths, texts = toy
    expected = R2D2Inferencer(model).encode_texts(texts)
    folder = model.save_pretrained(tmp_path / 'saved')
    assert torch.equal(R2D2Inferencer(folder).encode_texts(texts), expected)
    config = tmp_path / 'tiny.py'
    config.write_text(f'model = {tiny_model_cfg!r}\n')
    checkpoint = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    loaded = R2D2Inferencer(config, checkpoint, device='cpu')
    assert torch.equal(loaded.encode_images(paths), R2D2Inferencer(model).encode_images(paths))
    with pytest.raises(ValueError, match='pass its checkpoint'):
        R2D2Inferencer(config)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        R2D2Inferencer(config, tmp_path / 'missing.pth')


def test_bad_inputs_give_clear_errors(inferencer, toy, tmp_path):
    paths, texts = toy
    with pytest.raises(OSError, match='nope.png'):
        inferencer.encode_images([paths[0], str(tmp_path / 'nope.png')])
    with pytest.raises(ValueError, match='exactly one'):
        inferencer.build_gallery(images=paths, texts=texts)
    with pytest.raises(TypeError, match=r'texts\[1\]'):
        inferencer.encode_texts(['好', 3])
    with pytest.raises(ValueError, match='8 items but embeddings'):
        Gallery('texts', torch.zeros(3, 4), texts)
    with pytest.raises(TypeError, match='a query is a str'):
        inferencer.search(42, inferencer.build_gallery(texts=texts))
    with pytest.warns(UserWarning, match='searched as a text'):  # a str that names an image file
        assert inferencer.query_kind(paths[0]) == 'text'
    assert inferencer.query_kind(Path(paths[0])) == 'image'


def test_search_with_rerank_runs_the_query_tower_once(inferencer, model, toy):
    """Fails before issue 17: the query was encoded for its embedding, then again for re-ranking."""
    paths, texts = toy
    images, text_gallery = inferencer.build_gallery(images=paths), inferencer.build_gallery(texts=texts)
    calls = {'image': 0, 'text': 0}
    image_forward, text_forward = model.image_encoder.forward, model.text_encoder.forward

    def count(kind, forward):
        def wrapped(*args, **kwargs):
            calls[kind] += args[0].shape[0]  # rows through the tower
            return forward(*args, **kwargs)
        return wrapped

    def old_search(query, gallery):  # search() before issue 17: encode_query, then rerank() encodes again
        sims, indices = chunked_topk(inferencer.encode_query(query)[None], gallery.embeddings, 5)
        return inferencer.rerank(query, [gallery.items[i] for i in indices[0].tolist()], sims[0],
                                 indices=indices[0], rerank_k=3, gallery_kind=gallery.kind)

    want_text, want_image = old_search(texts[2], images), old_search(Path(paths[1]), text_gallery)
    model.image_encoder.forward = count('image', image_forward)
    model.text_encoder.forward = count('text', text_forward)
    got_text = inferencer.search(texts[2], images, top_k=5, rerank_k=3)
    assert calls == {'image': 3, 'text': 1}  # the 3 candidates' tokens; the query once
    calls.update(image=0, text=0)
    got_image = inferencer.search(Path(paths[1]), text_gallery, top_k=5, rerank_k=3)
    assert calls == {'image': 1, 'text': 3}
    assert [(r.index, r.score) for r in got_text] == [(r.index, r.score) for r in want_text]
    assert [(r.index, r.score) for r in got_image] == [(r.index, r.score) for r in want_image]
