# Table 3 on the toy data, R2D2 w/o FgD: TgD with the teacher and queues, no FgD.
_base_ = ['./r2d2_tiny_shapes.py']

model = dict(objective=dict(fgd=None, weights=dict(_delete_=True, gcpr=1.0, fgr=1.0, mlm=1.0)))
