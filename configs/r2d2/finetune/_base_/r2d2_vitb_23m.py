# R2D2 ViT-B pre-trained on 23M pairs (configs/r2d2/vitb_23m.py), fine-tuned for retrieval as
# r2d2_vitl_23m.py. The official fine-tuned ViT-B checkpoints of the model zoo were made this way.
_base_ = ['./r2d2_vitl_23m.py', './vitb_16.py']

model = _base_.vitb_16
load_from = 'checkpoints/r2d2_vitb_23m.pth'
