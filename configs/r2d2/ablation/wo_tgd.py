# Table 3, R2D2 w/o TgD: plain GCPR (no soft targets, no queues); the momentum teacher stays for
# feature-guided distillation. L = L_GCPR + L_FGR + L_FGD + L_MLM. R2D2 ViT-L, 2.3M pairs.
_base_ = ['../vitl_2.3m.py']

model = dict(
    contrastive_loss=dict(_delete_=True, type='GCPRLoss', temperature=0.07,
                          temperature_range=(0.001, 0.5)),
    queue=None,
)
