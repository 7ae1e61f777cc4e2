"""GCPRLoss (Eq. 1-2) against a loop over samples, and across 2 gloo processes."""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from r2d2lib.models.heads import Temperature
from r2d2lib.models.losses import GCPRLoss


def loop_gcpr(image, text, ids, temp):
    """Eq. 1-2 written per sample: -sum_j y_ij log s_ij, y uniform over same-id columns."""
    n = image.shape[0]
    total = 0.0
    for i in range(n):
        for query, keys in ((image[i], text), (text[i], image)):
            sims = [float(query @ keys[j]) / temp for j in range(n)]
            log_z = math.log(sum(math.exp(s) for s in sims))
            positives = [j for j in range(n) if ids[j] == ids[i]]
            total += -sum((sims[j] - log_z) / len(positives) for j in positives) / 2
    return total / n


def test_gcpr_equals_loop_with_one_hot_targets():
    torch.manual_seed(0)
    image, text = F.normalize(torch.randn(6, 8), dim=1), F.normalize(torch.randn(6, 8), dim=1)
    ids = torch.arange(6)
    loss = GCPRLoss()(image, text, ids, torch.tensor(0.07))
    assert loss.item() == pytest.approx(loop_gcpr(image, text, ids.tolist(), 0.07), rel=1e-5)


def test_gcpr_soft_targets_for_captions_of_the_same_image():
    torch.manual_seed(1)
    image, text = F.normalize(torch.randn(5, 8), dim=1), F.normalize(torch.randn(5, 8), dim=1)
    # two captions of image 0 and two of image 3, each seen through a different augmentation
    # (with identical image features soft and one-hot targets give the same loss)
    ids = torch.tensor([0, 0, 2, 3, 3])
    loss = GCPRLoss()(image, text, ids, torch.tensor(0.1))
    assert loss.item() == pytest.approx(loop_gcpr(image, text, ids.tolist(), 0.1), rel=1e-5)
    one_hot = GCPRLoss()(image, text, torch.arange(5), torch.tensor(0.1))
    assert not torch.isclose(loss, one_hot)


def test_the_models_temperature_is_learnt_through_the_loss_and_clamped_each_step():
    temperature = Temperature(init=0.07)
    image = F.normalize(torch.randn(4, 8), dim=1)
    GCPRLoss()(image, image.flip(0), torch.arange(4), temperature()).backward()
    assert temperature.temp.grad is not None and temperature.temp.grad.abs() > 0
    with torch.no_grad():
        temperature.temp.fill_(3.0)
    assert temperature().item() == pytest.approx(0.5) and temperature.tau.item() == pytest.approx(0.5)
    with torch.no_grad():
        temperature.temp.fill_(1e-6)
    assert temperature.tau.item() == pytest.approx(1e-6)  # reading tau (inference) does not clamp
    assert temperature().item() == pytest.approx(0.001)
    fixed = Temperature(init=0.05, learnable=False)
    assert 'temp' in dict(fixed.named_buffers()) and not list(fixed.parameters())
    with pytest.raises(ValueError, match='temperature'):
        Temperature(init=0.7)  # outside its range [0.001, 0.5]


# ---------------------------------------------------------------- 2 processes, gloo
def _make_batch():
    g = torch.Generator().manual_seed(0)
    x_img, x_txt = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    ids = torch.tensor([0, 1, 2, 2, 4, 5, 0, 7])  # same ids across the two ranks' halves
    return x_img, x_txt, ids


def _make_towers():
    torch.manual_seed(0)
    return torch.nn.Linear(6, 4), torch.nn.Linear(6, 4), Temperature(init=0.1)


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    img_tower, txt_tower, temperature = _make_towers()
    model = torch.nn.ModuleList([img_tower, txt_tower, temperature])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    x_img, x_txt, ids = _make_batch()
    part = slice(rank * 4, rank * 4 + 4)
    image = F.normalize(ddp.module[0](x_img[part]), dim=1)
    text = F.normalize(ddp.module[1](x_txt[part]), dim=1)
    loss = GCPRLoss()(image, text, ids[part], ddp.module[2]())
    # DDP hooks only fire through ddp.forward; average gradients by hand as DDP does.
    loss.backward()
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    if rank == 0:
        torch.save(dict(loss=mean_loss / world, grads=[p.grad for p in model.parameters()]), out)
    dist.destroy_process_group()


def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path, free_port):
    out = str(tmp_path / 'rank0.pt')
    mp.start_processes(_worker, args=(2, free_port, out), nprocs=2, start_method='spawn')
    result = torch.load(out)

    img_tower, txt_tower, temperature = _make_towers()
    x_img, x_txt, ids = _make_batch()
    image, text = F.normalize(img_tower(x_img), dim=1), F.normalize(txt_tower(x_txt), dim=1)
    loss = GCPRLoss()(image, text, ids, temperature())
    loss.backward()
    params = list(img_tower.parameters()) + list(txt_tower.parameters()) + list(temperature.parameters())
    torch.testing.assert_close(result['loss'], loss.detach(), atol=1e-6, rtol=1e-5)
    for got, want in zip(result['grads'], [p.grad for p in params]):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
