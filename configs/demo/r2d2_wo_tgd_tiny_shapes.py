# Table 3 on the toy data, R2D2 w/o TgD: plain GCPR, no queues; the teacher stays for FgD.
_base_ = ['./r2d2_tiny_shapes.py']

model = dict(objective=dict(contrastive=dict(_delete_=True, type='GCPRLoss'), queue=None))
