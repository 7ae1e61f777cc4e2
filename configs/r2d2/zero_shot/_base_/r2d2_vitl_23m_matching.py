# Zero-shot matching (Table 4, ICM / IQM): the pre-trained R2D2 ViT-L (23M) scores each labelled pair
# with its ITM heads (mean of both cross encoders' P(matched)); AUC. The model and loops are the matching
# fine-tuning's (../../finetune/_base_/r2d2_vitl_23m_matching.py, same weights), without training.
_base_ = ['../../finetune/_base_/r2d2_vitl_23m_matching.py']

train_cfg = optim_wrapper = param_scheduler = auto_scale_lr = None  # evaluation only
