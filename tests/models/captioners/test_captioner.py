"""ImageCaptioner: LM loss by hand, generation (beam 1 = greedy, batched = one at a time, no special
tokens), bad options, BLIP-style initialisation, save_pretrained / from_pretrained bit-exact."""
import copy
import json
import math

import pytest
import torch
from mmengine.registry import init_default_scope
from PIL import Image

from r2d2lib import load_model
from r2d2lib.io import PretrainedConfigError
from r2d2lib.io.checkpoint import PretrainedLoadError
from r2d2lib.models.captioners import CaptionLMLoss, ImageCaptioner
from r2d2lib.registry import MODELS

torch.set_num_threads(1)
init_default_scope('r2d2lib')

TINY_CAPTIONER = dict(
    type='ImageCaptioner',
    data_preprocessor=dict(type='ImageTextDataPreprocessor', image_size=32,
                           tokenizer=dict(vocab_file=None), max_length=12),
    image_encoder=dict(type='HFCLIPVisionEncoder',
                       config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                                   num_attention_heads=2, image_size=32, patch_size=8)),
    image_proj=dict(type='ProjectionHead'),
    text_decoder=dict(type='HFBertDecoder',
                      config=dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64)),
    objective=dict(type='CaptionObjective', lm=dict(type='CaptionLMLoss', label_smoothing=0.1)),
)


@pytest.fixture(scope='module')
def captioner(toy_data):
    cfg = copy.deepcopy(TINY_CAPTIONER)
    cfg['data_preprocessor']['tokenizer']['vocab_file'] = str(toy_data / 'vocab.txt')
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    with torch.no_grad():  # a decoder that looks at the image: a larger cross-attention output
        for layer in model.text_decoder.model.bert.encoder.layer:
            layer.crossattention.output.dense.weight.mul_(100)
    return model.eval()


def pixels(n, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_lm_loss_equals_hand_computed_cross_entropy():
    # vocabulary of 3, one caption [CLS]=0, 1, 2 and a padded position: two scored positions.
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 1.0], [1.0, 1.0, 1.0], [9.0, 0.0, 0.0]]])
    ids = torch.tensor([[0, 1, 2, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    eps = 0.1

    def term(row, target):
        logz = math.log(sum(math.exp(v) for v in row))
        logp = [v - logz for v in row]
        return (1 - eps) * -logp[target] + eps * sum(-lp for lp in logp) / 3

    expected = (term([2.0, 0.0, -1.0], 1) + term([0.5, 0.5, 1.0], 2)) / 2  # 1.9908..., 0.9313...
    loss = CaptionLMLoss(label_smoothing=eps)(logits, ids, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert CaptionLMLoss(label_smoothing=0.0)(logits, ids, mask).item() == pytest.approx(
        (-math.log(math.exp(0) / (math.exp(2) + 1 + math.exp(-1)))
         - math.log(math.exp(1) / (2 * math.exp(0.5) + math.exp(1)))) / 2, rel=1e-6)


def test_objective_loss_is_the_decoder_cross_entropy(captioner):
    tokens = captioner.data_preprocessor.tokenize(['左上角有一个红色的大圆形', '蓝色'])
    images = pixels(2)
    losses = captioner(dict(images=images, **tokens), mode='loss')
    logits = captioner.caption_logits(images, tokens['input_ids'], tokens['attention_mask'])
    keep = tokens['attention_mask'][:, 1:].bool()
    expected = torch.nn.functional.cross_entropy(logits[:, :-1][keep], tokens['input_ids'][:, 1:][keep],
                                                 label_smoothing=0.1)
    assert set(losses) == {'loss_lm'}
    assert losses['loss_lm'].item() == pytest.approx(expected.item(), rel=1e-6)
    losses['loss_lm'].backward()
    assert captioner.image_proj.weight.grad is not None  # the loss reaches the image side
    captioner.zero_grad()


def reference_greedy(model, images, max_length):
    """Greedy decoding without transformers or a cache: the argmax of the full forward, token by token."""
    tokenizer = model.tokenizer
    ids = torch.full((images.shape[0], 1), tokenizer.cls_token_id)
    done = torch.zeros(images.shape[0], dtype=torch.bool)
    banned = sorted(set(tokenizer.all_special_ids) - {tokenizer.sep_token_id})
    with torch.no_grad():
        while ids.shape[1] < max_length and not done.all():
            logits = model.caption_logits(images, ids, torch.ones_like(ids))[:, -1]
            logits[:, banned] = -float('inf')
            step = logits.argmax(-1).masked_fill(done, tokenizer.pad_token_id)
            ids = torch.cat([ids, step[:, None]], 1)
            done |= step == tokenizer.sep_token_id
    return ids


def test_greedy_equals_one_beam_and_a_cacheless_reference(captioner):
    images = pixels(3)
    greedy = captioner.generate_ids(images, max_length=10)
    assert torch.equal(greedy, reference_greedy(captioner, images, 10))
    assert len({tuple(row.tolist()) for row in greedy}) == 3  # the images are captioned differently
    beam1 = captioner.generate_ids(images, num_beams=1, do_sample=False, max_length=10)
    assert torch.equal(greedy, beam1)
    beam3 = captioner.generate_ids(images, num_beams=3, max_length=10)
    assert not torch.equal(beam3, greedy)  # beam search is another search


@pytest.mark.parametrize('options', [dict(num_beams=1), dict(num_beams=3),
                                     dict(num_beams=2, repetition_penalty=1.5, min_length=4)])
def test_batched_generation_equals_one_at_a_time(captioner, options):
    images = pixels(3)
    batched = captioner.generate(images, max_length=10, **options)
    single = [captioner.generate(images[i:i + 1], max_length=10, **options)[0] for i in range(3)]
    assert batched == single


def test_generation_honours_lengths_and_returns_no_special_tokens(captioner):
    tokenizer = captioner.tokenizer
    ids = captioner.generate_ids(pixels(4, seed=1), num_beams=3, max_length=7, min_length=6)
    assert ids.shape[1] <= 7
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    body = ids[:, 1:6]  # min_length 6: no [SEP] before the 6th token
    assert not (body == tokenizer.sep_token_id).any()
    banned = set(tokenizer.all_special_ids) - {tokenizer.sep_token_id, tokenizer.pad_token_id}
    assert not banned & set(ids[:, 1:].flatten().tolist())
    captions = captioner.generate(pixels(4, seed=1), do_sample=True, top_p=0.9, max_length=9)
    for caption in captions:
        assert all(token not in caption for token in tokenizer.all_special_tokens), caption
        assert ' ' not in caption


def test_bad_generation_options_and_inputs_are_refused(captioner):
    with pytest.raises(ValueError, match='max_length must be an integer >= 2'):
        captioner.generate(pixels(1), max_length=1)
    with pytest.raises(ValueError, match='num_beams'):
        captioner.generate(pixels(1), num_beams=0)
    with pytest.raises(ValueError, match='empty'):
        captioner.caption([])
    with pytest.raises(KeyError, match='unknown generation options'):
        captioner.generate(pixels(1), beam=2)
    image = Image.new('RGB', (40, 30), (255, 0, 0))
    assert len(captioner.caption([image, image], max_length=6)) == 2


def test_round_trip_is_bit_exact(captioner, tmp_path):
    folder = captioner.save_pretrained(tmp_path / 'captioner')
    config = json.loads((folder / 'config.json').read_text())
    assert config['architecture'] == 'ImageCaptioner' and 'objective' not in config['model']
    loaded = load_model(str(folder))
    assert type(loaded) is ImageCaptioner and loaded.objective is None
    original = {k: v for k, v in captioner.state_dict().items() if not k.startswith('objective.')}
    restored = loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    images = pixels(2, seed=3)
    assert torch.equal(loaded.generate_ids(images, num_beams=2), captioner.generate_ids(images, num_beams=2))
    config['model']['text_decoder']['type'] = 'os.system'
    (folder / 'config.json').write_text(json.dumps(config))
    with pytest.raises(PretrainedConfigError, match='text_decoder.type'):
        load_model(str(folder))


def test_decoder_initialises_from_a_text_encoder_as_blip(captioner, toy_data):
    from r2d2lib.models.encoders import HFBertEncoder
    bert = dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64)
    encoder = HFBertEncoder(config=bert)
    decoder = copy.deepcopy(captioner.text_decoder)
    decoder.load_text_encoder_state(encoder.model.state_dict(), 'the encoder')
    weights = decoder.model.bert.state_dict()
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(weights[key], value), key
    wrong = HFBertEncoder(config={**bert, 'num_hidden_layers': 2})
    with pytest.raises(PretrainedLoadError, match='unexpected'):
        decoder.load_text_encoder_state(wrong.model.state_dict(), 'the 2-layer encoder')


def test_pretrained_copies_an_r2d2_models_image_encoder_and_text_encoder(tiny_model_cfg, tmp_path):
    torch.manual_seed(1)
    r2d2 = MODELS.build({**tiny_model_cfg, 'objective': None}).eval()
    folder = r2d2.save_pretrained(tmp_path / 'r2d2')
    cfg = copy.deepcopy(TINY_CAPTIONER)
    cfg['data_preprocessor']['tokenizer'] = dict(name_or_path=str(folder))
    cfg['pretrained'] = dict(source=str(folder))
    model = MODELS.build(cfg)
    model.init_weights()
    for key, value in r2d2.image_encoder.state_dict().items():
        assert torch.equal(model.image_encoder.state_dict()[key], value), key
    decoder = model.text_decoder.model.bert.state_dict()
    for key, value in r2d2.text_encoder.model.state_dict().items():
        assert torch.equal(decoder[key], value), key
    exported = model.save_pretrained(tmp_path / 'captioner')
    assert json.loads((exported / 'config.json').read_text())['model']['pretrained'] is None
