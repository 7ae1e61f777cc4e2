"""TextToImageDiffusion: the loss is DDPM's noise-prediction MSE, sampling is seeded, condition dropout and
guidance do what the papers say, export round-trips bit-exactly, bad arguments are named."""
import copy
import math

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope

from r2d2lib.io.pretrained import load_pretrained
from r2d2lib.registry import MODELS

TEXTS = ['左上角有一个红色的大圆形，右下角有一个蓝色的小三角形',
         '绿色的小正方形在右上角，黄色的大圆形在左下角']


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batch(model, texts=TEXTS, seed=0):
    torch.manual_seed(seed)
    images = torch.randn(len(texts), 3, 32, 32)
    return dict(images=images, **model.data_preprocessor.tokenize(texts))


def cosine_alphas_cumprod(steps: int) -> torch.Tensor:
    """abar_t of Nichol & Dhariwal (2021) Eq. 17 with their beta clipping at 0.999, by hand."""
    f = [math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(steps + 1)]
    betas = [min(1 - f[t + 1] / f[t], 0.999) for t in range(steps)]
    return torch.tensor(np.cumprod([1 - b for b in betas]), dtype=torch.float32)


def test_loss_is_the_noise_prediction_mse_computed_by_hand(tiny_generator):
    model = tiny_generator
    model.objective.condition_dropout = 0.0
    inputs = batch(model)
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    timesteps = torch.tensor([3, 87])
    loss = model.objective(model, inputs, noise=noise, timesteps=timesteps)['loss_diffusion']

    abar = cosine_alphas_cumprod(100)[timesteps].view(-1, 1, 1, 1)
    assert torch.allclose(model.scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1), abar, atol=1e-6)
    x0 = (inputs['images'] * 127.5 + 127.5) / 127.5 - 1  # undo mean/std 0.5 (x 255), then [0, 255] -> [-1, 1]
    noisy = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    hidden = model.text_encoder(inputs['input_ids'], inputs['attention_mask'])
    prediction = model.unet.model(noisy, timesteps, encoder_hidden_states=hidden,
                                  encoder_attention_mask=inputs['attention_mask']).sample
    expected = ((prediction - noise) ** 2).mean()
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6), (loss, expected)
    assert loss.requires_grad and 0.5 < loss.item() < 2.0  # an untrained predictor of unit-variance noise


def test_v_prediction_targets_the_velocity(generator_cfg):
    init_default_scope('r2d2lib')
    cfg = copy.deepcopy(generator_cfg)
    cfg['noise_schedule'] = dict(num_train_timesteps=100, prediction_type='v_prediction')
    model = MODELS.build(cfg)
    sample, noise, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([10, 90])
    abar = cosine_alphas_cumprod(100)[t].view(-1, 1, 1, 1)
    expected = abar.sqrt() * noise - (1 - abar).sqrt() * sample
    assert torch.allclose(model.objective.target(model, sample, noise, t), expected, atol=1e-6)


@pytest.mark.parametrize('unconditional', ['learned', 'empty'])
def test_condition_dropout_gives_the_unconditional_context_at_the_configured_rate(generator_cfg,
                                                                                  unconditional):
    init_default_scope('r2d2lib')
    cfg = copy.deepcopy(generator_cfg)
    cfg['unconditional'] = unconditional
    model = MODELS.build(cfg)
    rows, length = 4000, 40
    context = torch.randn(rows, length, 32)
    mask = torch.ones(rows, length, dtype=torch.long)
    out, out_mask, dropped = model.objective.drop_conditions(model, context, mask,
                                                             torch.Generator().manual_seed(0))
    rate = dropped.float().mean().item()
    assert abs(rate - 0.25) < 4 * math.sqrt(0.25 * 0.75 / rows), rate  # 4 standard errors
    uncond, uncond_mask = model.unconditional_context(1)
    assert torch.equal(out[dropped], uncond.expand(int(dropped.sum()), -1, -1))
    assert torch.equal(out_mask[dropped], uncond_mask.expand(int(dropped.sum()), -1))
    assert torch.equal(out[~dropped], context[~dropped]) and torch.equal(out_mask[~dropped], mask[~dropped])
    if unconditional == 'empty':  # the text encoder's states of [CLS] [SEP]
        assert uncond_mask[0, :3].tolist() == [1, 1, 0] and int(uncond_mask.sum()) == 2
    else:
        assert torch.equal(uncond[0], model.uncond_embedding)


def test_guidance_one_is_the_conditional_prediction_and_w_mixes_both(tiny_generator):
    model = tiny_generator.eval()
    inputs = batch(model)
    context, mask = model.text_context(inputs['input_ids'], inputs['attention_mask'])
    x, t = torch.randn(2, 3, 32, 32), torch.tensor(50)
    with torch.no_grad():
        cond = model.unet(x, t.expand(2), context, mask)
        uncond = model.unet(x, t.expand(2), *model.unconditional_context(2))
        assert torch.equal(model.guided_prediction(x, t, context, mask, 1.0), cond)
        assert torch.equal(model.guided_prediction(x, t, context, mask, 0.0), uncond)
        guided = model.guided_prediction(x, t, context, mask, 3.0)
    assert torch.allclose(guided, uncond + 3.0 * (cond - uncond), atol=1e-5)
    assert not torch.allclose(guided, cond, atol=1e-3)


@pytest.mark.parametrize('sampler', ['dpm-solver', 'ddim', 'ddpm'])
def test_a_seed_makes_sampling_deterministic(tiny_generator, sampler):
    model = tiny_generator.eval()
    first = model.generate(TEXTS[:1], num_images=2, seed=7, sampler=sampler)
    again = model.generate(TEXTS[:1], num_images=2, seed=7, sampler=sampler)
    other = model.generate(TEXTS[:1], num_images=2, seed=8, sampler=sampler)
    assert [im.size for im in first] == [(32, 32)] * 2
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(other[0]))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(first[1]))  # two draws of one call differ


def test_save_load_round_trip_is_bit_exact(tiny_generator, tmp_path):
    model = tiny_generator.eval()
    model.save_pretrained(tmp_path / 'generator')
    loaded = load_pretrained(tmp_path / 'generator', torch.nn.Module)
    assert type(loaded).__name__ == 'TextToImageDiffusion' and loaded.objective is None
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith('objective.')}
    theirs = loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    a = model.generate(TEXTS[1], seed=3, steps=2)[0]
    b = loaded.generate(TEXTS[1], seed=3, steps=2)[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize('kwargs, message', [
    (dict(texts=['']), 'text 0 is empty'),
    (dict(texts=[TEXTS[0], '  ']), 'text 1 is empty'),
    (dict(texts=[]), 'texts is empty'),
    (dict(steps=0), 'steps must be an integer >= 1'),
    (dict(guidance=-0.5), 'guidance'),
    (dict(guidance=float('nan')), 'guidance'),
    (dict(image_size=31), 'image_size must be a positive multiple of 2'),
    (dict(sampler='euler'), 'sampler must be one of'),
    (dict(num_images=0), 'num_images'),
])
def test_bad_arguments_are_named(tiny_generator, kwargs, message):
    kwargs = {'texts': TEXTS[:1], **kwargs}
    with pytest.raises(ValueError, match=message):
        tiny_generator.generate(**kwargs)


def test_bad_configs_are_named(generator_cfg):
    init_default_scope('r2d2lib')
    for change, message in ((dict(unconditional='zeros'), 'unconditional must be one of'),
                            (dict(sampling=dict(steps=0)), 'steps'),
                            (dict(unet=dict(type='DiffusersUNet', config=dict(in_channels=4))), 'fills in'),
                            (dict(objective=dict(type='DiffusionObjective', condition_dropout=1.0)),
                             'condition_dropout')):
        with pytest.raises(ValueError, match=message):
            MODELS.build({**copy.deepcopy(generator_cfg), **change})


TINY_VAE = dict(type='DiffusersAutoencoder',
                config=dict(block_out_channels=[8, 16], down_block_types=['DownEncoderBlock2D'] * 2,
                            up_block_types=['UpDecoderBlock2D'] * 2, latent_channels=4, norm_num_groups=4,
                            sample_size=32))


def test_latent_space_trains_samples_and_round_trips_with_a_vae_built_from_config(generator_cfg, tmp_path):
    init_default_scope('r2d2lib')
    cfg = copy.deepcopy(generator_cfg)
    cfg['vae'] = TINY_VAE
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    assert model.unet.model.config.in_channels == 4 and model.unet.model.config.sample_size == 16
    assert model.downsample_factor == 4 and all(not p.requires_grad for p in model.vae.parameters())
    inputs = batch(model)
    latents = model.encode_images(inputs['images'])
    assert latents.shape == (2, 4, 16, 16)
    loss = model.objective(model, inputs)['loss_diffusion']
    loss.backward()
    assert model.vae.model.encoder.conv_in.weight.grad is None
    assert next(model.unet.parameters()).grad is not None
    model.eval()
    with pytest.raises(ValueError, match='multiple of 4'):
        model.generate(TEXTS[0], image_size=34)
    image = model.generate(TEXTS[0], seed=0, steps=2)[0]
    assert image.size == (32, 32)
    model.save_pretrained(tmp_path / 'latent')
    loaded = load_pretrained(tmp_path / 'latent', torch.nn.Module)
    assert np.array_equal(np.asarray(loaded.generate(TEXTS[0], seed=0, steps=2)[0]), np.asarray(image))


def test_the_text_encoder_comes_from_an_r2d2_folder_and_stays_frozen(generator_cfg, tiny_model_cfg, tmp_path):
    init_default_scope('r2d2lib')
    donor = MODELS.build({k: v for k, v in tiny_model_cfg.items() if k != 'objective'})
    donor.save_pretrained(tmp_path / 'r2d2')
    cfg = copy.deepcopy(generator_cfg)
    cfg['pretrained'] = dict(source=str(tmp_path / 'r2d2'))
    model = MODELS.build(cfg)
    model.init_weights()
    for key, value in donor.text_encoder.state_dict().items():
        assert torch.equal(model.text_encoder.state_dict()[key], value), key
    assert all(not p.requires_grad for p in model.text_encoder.parameters())
    assert model.model_config['pretrained'] is not None
    model.save_pretrained(tmp_path / 'generator')  # exported without it
    assert load_pretrained(tmp_path / 'generator', torch.nn.Module).pretrained is None


def test_pixel_space_samplers_clip_the_x0_estimate_to_the_image_range(tiny_generator, generator_cfg):
    """Unclipped, the eps-model's x_0 estimate at the noisiest steps (divided by sqrt(abar_t) < 1e-3 under
    the cosine schedule) threw the toy demo's samples to pure noise; latents are not clipped."""
    for name in ('ddim', 'ddpm'):
        config = tiny_generator.make_sampler(name, 3).config
        assert config.clip_sample is True and config.clip_sample_range == 1.0
    dpm = tiny_generator.make_sampler('dpm-solver', 3).config
    assert dpm.thresholding is True and dpm.sample_max_value == 1.0
    # what the clip does: a DDIM step from pure noise with a wrong eps keeps x_0's estimate in [-1, 1]
    scheduler = tiny_generator.make_sampler('ddim', 3)
    t = scheduler.timesteps[0]
    out = scheduler.step(torch.zeros(1, 3, 4, 4), t, torch.full((1, 3, 4, 4), 5.0))
    assert float(out.pred_original_sample.abs().max()) == 1.0
    init_default_scope('r2d2lib')
    latent = MODELS.build({**copy.deepcopy(generator_cfg), 'vae': TINY_VAE})
    assert latent.make_sampler('ddim', 3).config.clip_sample is False
    assert latent.make_sampler('dpm-solver', 3).config.thresholding is False
