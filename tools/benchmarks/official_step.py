"""``official-step``: our training step against the official one, at equal objective and in full.

    python tools/benchmark.py official-step --config configs/r2d2/vitb_2.3m.py [--batch-size 2]
        [--repeats 5] [--threads 1] [--live-peak] [--json OUT]

Three methods on the same batches, alternating (the order rotates every repeat), each step a
forward and a backward pass (no optimizer step: the equal-objective pair has the same trainable
parameters, so the optimizer's work is the same for both):

* ``official``: the official training step, ``R2D2_Retrieval.forward`` of the official release
  (github.com/yuxie11/R2D2, ``models/r2d2_retrieval.py`` at commit c7127fa), lines 23-79 with
  ``compute_it_similarity`` (81-93), ``compute_gcpr_loss`` (95-106), ``compute_fgr_loss``
  (108-124) and ``cross_output`` (126-142), line for line on our modules (the same weights):
  GCPR and FGR only, the hard negatives drawn by ``torch.multinomial(weights[i], 1).item()`` per
  row (lines 51-53, 63-66; no other host sync), two cross-encoder passes (positives, line 43;
  negatives, line 72), eager attention (transformers' ``'eager'`` in the towers, an explicit
  softmax in the cross encoders). Tokenization (line 30) is left out of both: every method gets
  the same preprocessed ids. One process: the gathers are the identity.
* ``ours-gcpr-fgr``: ``R2D2Model`` with ``R2D2Objective`` restricted to the same objective
  (``GCPRLoss``, ``FGRLoss`` with class weights (1, 2), no MLM, teacher, queue or FgD): the
  equal-objective comparison.
* ``ours-full``: the config's own objective (Eq. 8: TgD with teacher and queue, FGR, FgD, MLM with
  ET), from the steady state of a full queue: reported against ``official`` separately, since it
  computes more terms.

CPU seconds of the process and wall seconds per step; the median and min-max over ``--repeats``
and the ratios of the medians. Memory: the peak RSS above the RSS before the step (``VmHWM``
after resetting it) per method, and with ``--live-peak`` (a separate, slower pass) the peak of
the live tensors the step creates.
"""
import argparse
import copy
import gc
import math
import tempfile
import time
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from torch import Tensor

from r2d2lib.engine import load_config
from r2d2lib.models.fusion.cross_encoder import AttentionProjection

from .common import (
    build_model,
    fill_queue,
    malloc_trim,
    positive_int,
    report_lines,
    reset_peak_rss,
    rss_mib,
    synthetic_inputs,
    use_local_tokenizer,
    vm_hwm_mib,
)
from .losses import LiveTensorPeak, summarize

GCPR_FGR = dict(type='R2D2Objective', contrastive=dict(type='GCPRLoss'),
                fgr=dict(type='FGRLoss', class_weight=(1.0, 2.0)), mlm_head=None, teacher=None, queue=None,
                fgd=None, weights=dict(gcpr=1.0, fgr=1.0))


MASK_VALUE = -10000.0  # BERT's additive mask


# ----------------------------------------------------------------- eager attention, as the official code
class EagerAttentionProjection(AttentionProjection):
    """Cross-encoder attention as BERT's eager ``BertSelfAttention`` (the official cross encoders are
    BERT layers): the [N, M] matrix ``softmax(q k^T / sqrt(d) + mask)`` materialised, additive mask."""

    def forward(self, x: Tensor, context: Tensor, mask: Optional[Tensor],
                context_index: Optional[Tensor] = None) -> Tensor:
        if context_index is not None:  # the official code passes every pair's own copy
            context = context[context_index]
        q, k, v = self._heads(self.query(x)), self._heads(self.key(context)), self._heads(self.value(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + (~mask).to(scores.dtype) * MASK_VALUE
        probs = F.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
        out = probs @ v
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d)


def eager_model_config(model_cfg: dict) -> dict:
    """``model_cfg`` with transformers' eager attention in the HF encoders (timm: :func:`make_official`)."""
    cfg = dict(model_cfg)
    for key in ('image_encoder', 'text_encoder'):
        encoder = dict(cfg[key])
        if encoder.get('type') in ('HFBertEncoder', 'HFCLIPVisionEncoder'):
            encoder['attn_implementation'] = 'eager'
        cfg[key] = encoder
    return cfg


# ----------------------------------------------------------------- the official step, line for line
def official_loss(model, image, text_ids, text_mask, idx):
    """models/r2d2_retrieval.py@c7127fa ``forward`` (lines 23-79) on our modules: loss_gcpr, loss_fgr."""
    with torch.no_grad():                                                   # 24
        model.temperature.temp.clamp_(0.001, 0.5)                           # 25
        image_embeds = model.image_encoder(image)                           # 26
        image_atts = None  # line 27: all ones, i.e. no mask on the image keys
    image_feat = F.normalize(model.vision_proj(image_embeds[:, 0, :]), dim=-1)   # 28
    text_output = model.text_encoder(text_ids, text_mask)                   # 31 (encode_text)
    text_feat = F.normalize(model.text_proj(text_output[:, 0, :]), dim=-1)
    temp = model.temperature.temp
    with torch.no_grad():                                                   # 34-38
        idx = idx.view(-1, 1)
        idx_all = idx.t()
        pos_idx = torch.eq(idx, idx_all).float()
        cur_sim_targets = pos_idx / pos_idx.sum(1, keepdim=True)
    sim_i2t = image_feat @ text_feat.T / temp                               # 95-106 compute_gcpr_loss
    sim_t2i = text_feat @ image_feat.T / temp
    loss_i2t = -torch.sum(F.log_softmax(sim_i2t, dim=1) * cur_sim_targets, dim=1).mean()
    loss_t2i = -torch.sum(F.log_softmax(sim_t2i, dim=1) * cur_sim_targets, dim=1).mean()
    loss_gcpr = (loss_i2t + loss_t2i) / 2
    text_hidden_state = text_output.clone()                                 # 42
    output_pos, img_output_pos = cross_output(model, text_hidden_state, text_mask, image_embeds,  # 43
                                              image_atts)
    with torch.no_grad():                                                   # 81-93 compute_it_similarity
        pos = torch.eq(idx, idx.T)
        weights_i2t = F.softmax(image_feat @ text_feat.T / temp, dim=1)
        weights_i2t.masked_fill_(pos, 0)
        weights_t2i = F.softmax(text_feat @ image_feat.T / temp, dim=1)
        weights_t2i.masked_fill_(pos, 0)
    batch_size = image.size(0)                                              # 47
    image_embeds_neg = []                                                   # 49-56
    total_image_embeds = image_embeds
    for i in range(batch_size):
        neg_idx = torch.multinomial(weights_t2i[i], 1).item()
        image_embeds_neg.append(total_image_embeds[neg_idx])
    image_embeds_neg = torch.stack(image_embeds_neg, dim=0)
    image_embeds_all = torch.cat([image_embeds_neg, image_embeds], dim=0)
    text_atts_neg, text_hidden_states_neg = [], []                          # 59-70
    for i in range(batch_size):
        neg_idx = torch.multinomial(weights_i2t[i], 1).item()
        text_atts_neg.append(text_mask[neg_idx])
        text_hidden_states_neg.append(text_hidden_state[neg_idx])
    text_atts_neg = torch.stack(text_atts_neg, dim=0)
    text_hidden_states_neg = torch.stack(text_hidden_states_neg, dim=0)
    text_atts_all = torch.cat([text_mask, text_atts_neg], dim=0)
    text_hidden_states_all = torch.cat([text_hidden_state, text_hidden_states_neg], dim=0)
    output_neg, img_output_neg = cross_output(model, text_hidden_states_all, text_atts_all, image_embeds_all,
                                              image_atts)                   # 72
    itm_labels = torch.cat([torch.ones(1 * batch_size, dtype=torch.long),  # 74-76
                            torch.zeros(2 * batch_size, dtype=torch.long)], dim=0).to(image.device)
    loss_weight = torch.tensor([1.0, 2], device=image.device)
    vl_output = model.text_image_itm_head(torch.cat([output_pos[:, 0], output_neg[:, 0]], dim=0))  # 108-124
    vl_output_i = model.image_text_itm_head(torch.cat([img_output_pos[:, 0], img_output_neg[:, 0]], dim=0))
    loss_fgr = (F.cross_entropy(vl_output, itm_labels, weight=loss_weight) +
                F.cross_entropy(vl_output_i, itm_labels, weight=loss_weight)) / 2
    return loss_gcpr, loss_fgr                                              # 79


def cross_output(model, text_embeds, text_atts, image_embeds, image_atts):
    """models/r2d2_retrieval.py@c7127fa lines 126-142: text-image, then image-text cross encoder."""
    output = model.text_image_encoder(text_embeds, image_embeds, x_mask=text_atts)
    img_output = model.image_text_encoder(model.image_fusion_proj(image_embeds), text_embeds,
                                          context_mask=text_atts)
    return output, img_output


def make_official(model):
    """Eager attention in the cross encoders and timm blocks (the towers: :func:`eager_model_config`)."""
    for module in model.modules():
        if type(module) is AttentionProjection:
            module.__class__ = EagerAttentionProjection
        if hasattr(module, 'fused_attn'):
            module.fused_attn = False
    return model


# ----------------------------------------------------------------- the benchmark
def build_methods(args) -> Dict[str, object]:
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    tmp = tempfile.mkdtemp(prefix='r2d2_official_step_')
    use_local_tokenizer(cfg, tmp)
    equal = Config(copy.deepcopy(cfg._cfg_dict.to_dict()))
    equal.model['objective'] = dict(GCPR_FGR)
    official_cfg = Config(copy.deepcopy(equal._cfg_dict.to_dict()))
    official_cfg.model = eager_model_config(official_cfg.model)
    models = {}
    for name, c in (('official', official_cfg), ('ours-gcpr-fgr', equal), ('ours-full', cfg)):
        torch.manual_seed(args.seed)
        models[name] = build_model(c, torch.device('cpu'))
    make_official(models['official'])
    fill_queue(models['ours-full'].objective, args.batch_size, torch.Generator().manual_seed(args.seed))
    return models


def step(name: str, model, inputs: dict) -> float:
    if name == 'official':
        loss_gcpr, loss_fgr = official_loss(model, inputs['images'], inputs['input_ids'],
                                            inputs['attention_mask'], inputs['image_ids'])
        total = loss_gcpr + loss_fgr
    else:
        losses = model(inputs, data_samples=None, mode='loss')
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    model.zero_grad(set_to_none=True)
    return total.item()


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    models = build_methods(args)
    names = list(models)
    generator = torch.Generator().manual_seed(args.seed)
    batches = [synthetic_inputs(models['official'], args.batch_size, i, generator, torch.device('cpu'))
               for i in range(args.repeats + 1)]
    for name in names:  # warm-up
        step(name, models[name], batches[0])
    times = {n: dict(cpu=[], wall=[], rss=[]) for n in names}
    for repeat in range(args.repeats):
        order = names[repeat % 3:] + names[:repeat % 3]
        for name in order:
            gc.collect()
            malloc_trim()
            before = rss_mib()
            reset_peak_rss()
            cpu, wall = time.process_time(), time.perf_counter()
            step(name, models[name], batches[repeat + 1])
            times[name]['cpu'].append(time.process_time() - cpu)
            times[name]['wall'].append(time.perf_counter() - wall)
            times[name]['rss'].append(vm_hwm_mib() - before)
    lines = []
    for name in names:
        line = dict(method=name, config=args.config, batch_size=args.batch_size,
                    threads=torch.get_num_threads(), repeats=args.repeats,
                    cpu_s=summarize(times[name]['cpu']), wall_s=summarize(times[name]['wall']),
                    peak_rss_above_start_mib=summarize(times[name]['rss']))
        if args.live_peak:
            with LiveTensorPeak() as tracker:
                step(name, models[name], batches[0])
            line['live_tensor_peak_mib'] = tracker.peak / 2 ** 20
        lines.append(line)
    med = {line['method']: line for line in lines}

    def ratio(a, b, key):
        return med[a][key]['median'] / med[b][key]['median']
    lines.append(dict(method='official / ours-gcpr-fgr (equal objective; >1: ours faster)',
                      cpu_s=ratio('official', 'ours-gcpr-fgr', 'cpu_s'),
                      wall_s=ratio('official', 'ours-gcpr-fgr', 'wall_s')))
    lines.append(dict(method='ours-full / official (Eq. 8 against the official GCPR + FGR step)',
                      cpu_s=ratio('ours-full', 'official', 'cpu_s'),
                      wall_s=ratio('ours-full', 'official', 'wall_s')))
    report_lines(lines, args.json)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', required=True, help='an R2D2 config (configs/r2d2/vitb_2.3m.py)')
    parser.add_argument('--batch-size', type=positive_int, default=2)
    parser.add_argument('--repeats', type=positive_int, default=5)
    parser.add_argument('--threads', type=positive_int, default=1, help='torch threads (default 1)')
    parser.add_argument('--live-peak', action='store_true', help='also the peak of live tensors (slow)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', metavar='OUT', help='write the measurements to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
