# The demo (r2d2_tiny_shapes.py) trained in bfloat16 mixed precision: the one line below is the
# whole switch (MixedPrecisionOptimWrapper is mmengine's AmpOptimWrapper, also on the CPU; the
# optimizer and its settings come from the base config). dtype='float16' adds dynamic loss scaling.
_base_ = ['./r2d2_tiny_shapes.py']

optim_wrapper = dict(type='MixedPrecisionOptimWrapper', dtype='bfloat16')
