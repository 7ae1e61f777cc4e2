# Table 3 on the toy data, R2D2 w/o TwD: no momentum teacher, queues or FgD;
# L = L_GCPR + L_FGR + L_MLM.
_base_ = ['./r2d2_tiny_shapes.py']

model = dict(objective=dict(
    contrastive=dict(_delete_=True, type='GCPRLoss'),
    teacher=None,
    queue=None,
    fgd=None,
    weights=dict(_delete_=True, gcpr=1.0, fgr=1.0, mlm=1.0),
))
