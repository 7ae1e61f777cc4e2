# Table 3, R2D2 w/o TgD: plain GCPR (no soft targets, no queues); the momentum teacher stays for
# feature-guided distillation. L = L_GCPR + L_FGR + L_FGD + L_MLM. R2D2 ViT-L, 2.3M pairs.
_base_ = ['../vitl_2.3m.py']

model = dict(objective=dict(
    contrastive=dict(_delete_=True, type='GCPRLoss'),
    queue=None,
))
