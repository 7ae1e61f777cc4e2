# R2D2 ViT-L pre-trained on the 23M-pair Zero corpus (the Table 1 model), fine-tuned for image-text
# retrieval: GCPR (Eq. 2) and FGR (Eq. 3) jointly (Appendix C), 10 epochs (schedule_10e.py).
#
# The model is the pre-trained R2D2's architecture; its objective here is plain GCPR (the temperature
# stays learnable) and FGR with in-batch hard negatives: no MLM head, momentum teacher, queue or FgD.
# The architecture is exactly the model zoo's (r2d2lib.get_model('r2d2_vitl_23m')) and that of the
# converted official checkpoint, so the pre-trained weights load strictly with `load_from`, a
# checkpoint of this model's keys (docs/finetune.md says how to make it from the official release or
# from your own pre-training). A missing file stops tools/train.py before the first step; point
# elsewhere with --cfg-options load_from=PATH. The ViT stays frozen as in pre-training (the paper does
# not say it is unfrozen; set model.image_encoder.frozen=False to fine-tune it). Nothing is downloaded
# except the tokenizer (hfl/chinese-roberta-wwm-ext), on first use.
_base_ = [
    '../../../_base_/models/r2d2_vitl.py',
    '../../../_base_/default_runtime.py',
    './schedule_10e.py',
]

model = dict(
    image_encoder=dict(pretrained=None),  # the ViT's weights are in the checkpoint
    objective=dict(
        _delete_=True, type='R2D2Objective', contrastive=dict(type='GCPRLoss'), fgr=dict(type='FGRLoss'),
        weights=dict(gcpr=1.0, fgr=1.0)),
)
load_from = 'checkpoints/r2d2_vitl_23m.pth'

# retrieval both ways (or as the metric's directions), the top 128 re-ranked by the cross encoders
val_cfg = dict(type='RetrievalValLoop', top_k=128)
test_cfg = dict(type='RetrievalTestLoop', top_k=128)
default_hooks = dict(checkpoint=dict(save_best='retrieval/rerank_R@M', rule='greater'))
