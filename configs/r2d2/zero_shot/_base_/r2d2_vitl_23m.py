# Zero-shot evaluation (Sec. 4.4, Table 4): R2D2 ViT-L pre-trained on the 23M-pair Zero corpus,
# evaluated on a downstream set without fine-tuning. The model is the fine-tuning model of
# ../../finetune/_base_/r2d2_vitl_23m.py (the pre-trained R2D2's architecture, retrieval loops that
# re-rank the top 128), and the configs have no training part; run them with the test loop:
#   python tools/test.py configs/r2d2/zero_shot/<config>.py checkpoints/r2d2_vitl_23m.pth
# The leaf configs add a downstream dataset base and drop its training loader.
_base_ = ['../../finetune/_base_/r2d2_vitl_23m.py']

train_cfg = optim_wrapper = param_scheduler = auto_scale_lr = None  # evaluation only
