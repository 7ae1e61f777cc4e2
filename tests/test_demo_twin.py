"""The demo's twin test (tools/demo.py): own image above its swapped twin, by embeddings and re-ranked."""
import importlib.util
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope

from r2d2lib.evaluation.ranking import chunked_topk, rerank_topk
from r2d2lib.registry import MODELS

ROOT = Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location('demo_script', ROOT / 'tools' / 'demo.py')
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)


def one(sims, match_true, match_twin, top_k=2, true=0, twin=1):
    """twin_wins of one caption against a 4-image gallery."""
    result = demo.twin_wins(torch.tensor([sims]), torch.tensor([true]), torch.tensor([twin]),
                            torch.tensor([match_true]), torch.tensor([match_twin]), top_k)
    return result['embedding'], result['reranked']


@pytest.mark.parametrize('sims, match_true, match_twin, expected', [
    # both in the top 2: probability + similarity decides (1.4 vs 1.3, then 1.0 vs 1.7)
    ([0.9, 0.8, 0.1, 0.0], 0.5, 0.5, (100.0, 100.0)),
    ([0.9, 0.8, 0.1, 0.0], 0.1, 0.9, (100.0, 0.0)),
    ([0.4, 0.5, 0.0, 0.0], 0.9, 0.1, (0.0, 100.0)),  # re-ranking fixes the embedding's order
    # only the twin is shortlisted (image 2 is above the own image): it stays above, whatever the match
    ([0.5, 0.6, 0.7, 0.0], 1.0, 0.0, (0.0, 0.0)),
    # neither shortlisted (images 2, 3 above both): the similarity decides, a tie counts half
    ([0.3, 0.3, 0.9, 0.8], 1.0, 0.0, (50.0, 50.0)),
    ([0.3, 0.2, 0.9, 0.8], 0.0, 1.0, (100.0, 100.0)),
])
def test_twin_wins_of_hand_built_rankings(sims, match_true, match_twin, expected):
    assert one(sims, match_true, match_twin) == expected


def test_twin_wins_averages_captions_and_dual_encoders_have_no_reranked_value():
    sims = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.4, 0.5, 0.0, 0.0], [0.3, 0.3, 0.9, 0.8]])
    true, twin = torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0])
    result = demo.twin_wins(sims, true, twin, torch.tensor([0.5, 0.9, 0.0]),
                            torch.tensor([0.5, 0.1, 1.0]), 2)
    assert result == dict(captions=3, embedding=pytest.approx(100 * 1.5 / 3),
                          reranked=pytest.approx(100 * 2.5 / 3))
    assert demo.twin_wins(sims, true, twin, None, None, 2) == dict(captions=3, embedding=pytest.approx(50.0),
                                                                   reranked=None)
    assert 'embedding similarity 50.0%, re-ranked -' in demo.format_twin_test(dict(captions=3, embedding=50.0,
                                                                                   reranked=None))


def test_twin_test_matches_the_retrieval_loops_reranked_order(toy_data, tiny_model_cfg):
    """On the 8 test images (4 twin pairs, 16 captions), a tiny untrained R2D2: the twin test equals the
    order that chunked_topk + rerank_topk (what RetrievalTestLoop runs) give, the rest by similarity."""
    init_default_scope('r2d2lib')
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg).eval()
    top_k = 3
    result = demo.twin_test(model, str(toy_data), top_k)
    records = demo.load_objects(str(toy_data), 'test')
    assert result['captions'] == 16 and [r['group'] for r in records] == [0, 0, 1, 1, 2, 2, 3, 3]
    prep = model.data_preprocessor
    with torch.no_grad():
        tokens, image_embeds = model.image_features(prep.preprocess(
            [demo.open_rgb(toy_data / r['image_path']) for r in records]))
        texts = [(c, i) for i, r in enumerate(records) for c in r['captions']]
        batch = prep.tokenize([c for c, _ in texts])
        hidden, text_embeds = model.text_features(batch['input_ids'], batch['attention_mask'])
        sims, order = chunked_topk(text_embeds, image_embeds, len(records))

        def score(query_rows, image_rows):
            return model.match_features(tokens[image_rows], hidden[query_rows],
                                        batch['attention_mask'][query_rows])

        _, reranked = rerank_topk(order[:, :top_k], sims[:, :top_k], score, 64, progress=False)
    orders = {'embedding': order, 'reranked': torch.cat([reranked, order[:, top_k:]], dim=1)}
    for name, ranking in orders.items():
        wins = [ranking[t].tolist().index(i) < ranking[t].tolist().index(i ^ 1)  # twins: 2k and 2k + 1
                for t, (_, i) in enumerate(texts)]
        assert result[name] == pytest.approx(100 * sum(wins) / len(wins)), name
