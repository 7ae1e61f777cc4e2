# Runtime shared by every config: scope, hooks, logging, environment.
default_scope = 'r2d2lib'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

# RandomStateHook saves the RNG states in checkpoints so that a resumed run continues exactly.
# MomentumUpdateHook moves the momentum teacher after each optimizer step (idle without one).
custom_hooks = [dict(type='RandomStateHook'), dict(type='MomentumUpdateHook'), dict(type='DataReportHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # backend None: nccl with CUDA GPUs, gloo without (StrictRunner); set a name to force one
    dist_cfg=dict(backend=None),
)

log_processor = dict(by_epoch=True, window_size=50)
# INFO: progress, results and what needs action. DEBUG (tools/train.py --verbose) adds mmengine's
# environment and config dump, the hook order and the optimizer's per-parameter options (StrictRunner).
log_level = 'INFO'
load_from = None
resume = False
# diff_rank_seed: every rank draws its own dropout masks and hard negatives.
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
