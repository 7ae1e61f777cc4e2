# Table 3, R2D2 w/o FgD: no feature-guided distillation; TgD keeps the momentum teacher and the
# weighted queues. L = L_GCPR^TgD + L_FGR + L_MLM. R2D2 ViT-L, 2.3M pairs.
_base_ = ['../vitl_2.3m.py']

model = dict(objective=dict(
    fgd=None,
    weights=dict(_delete_=True, gcpr=1.0, fgr=1.0, mlm=1.0),
))
