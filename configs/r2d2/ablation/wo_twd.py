# Table 3, R2D2 w/o TwD: no two-way distillation, so no momentum teacher, queues or FgD;
# L = L_GCPR + L_FGR + L_MLM. R2D2 ViT-L, 2.3M pairs.
_base_ = ['../vitl_2.3m.py']

model = dict(
    contrastive_loss=dict(_delete_=True, type='GCPRLoss', temperature=0.07,
                          temperature_range=(0.001, 0.5)),
    teacher=None,
    queue=None,
    fgd_loss=None,
    loss_weights=dict(_delete_=True, gcpr=1.0, fgr=1.0, mlm=1.0),
)
