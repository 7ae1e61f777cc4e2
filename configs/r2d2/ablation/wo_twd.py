# Table 3, R2D2 w/o TwD: no two-way distillation, so no momentum teacher, queues or FgD;
# L = L_GCPR + L_FGR + L_MLM. R2D2 ViT-L, 2.3M pairs.
_base_ = ['../vitl_2.3m.py']

model = dict(objective=dict(
    contrastive=dict(_delete_=True, type='GCPRLoss'),
    teacher=None,
    queue=None,
    fgd=None,
    weights=dict(_delete_=True, gcpr=1.0, fgr=1.0, mlm=1.0),
))
