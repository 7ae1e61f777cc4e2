# R2D2 ViT-L (23M) fine-tuned for image-text matching on ICM / IQM: FGR only (Eq. 3, Appendix C) on the
# labelled pairs, plus the pre-training hard negatives of every matched pair (MatchingObjective says
# why and how), 10 epochs; the checkpoint with the best validation AUC is kept. Same model and
# pre-trained weights as r2d2_vitl_23m.py; the dual encoder only draws the negatives.
_base_ = ['./r2d2_vitl_23m.py']

model = dict(
    data_preprocessor=dict(type='MatchingDataPreprocessor'),  # passes each pair's 0/1 label
    objective=dict(_delete_=True, type='MatchingObjective', fgr=dict(type='FGRLoss'), hard_negatives=True,
                   weights=dict(fgr=1.0)),
)
val_cfg = dict(_delete_=True, type='MatchingValLoop')
test_cfg = dict(_delete_=True, type='MatchingTestLoop')
default_hooks = dict(checkpoint=dict(save_best='matching/AUC', rule='greater'))
