# R2D2 ViT-B with the full objective of Eq. 8 (Sec. 3, 4.1): the dual encoder of
# dual_encoder_vitb.py plus two 6-layer cross encoders, and
#   L = L_GCPR^TgD + L_FGR + L_FGD + L_MLM
# GCPR with target-guided distillation (alpha 0.4, momentum teacher m = 0.995, weighted queues of
# 65,536 features decayed by 0.99 per step), fine-grained ranking with hard negatives, MLM on 15% of
# the text tokens riding the FGR pass (enhanced training), feature-guided distillation (tau_s 0.1,
# tau_t 0.04, centred teacher). The ablation configs switch these parts off one by one.
_base_ = ['./dual_encoder_vitb.py']

text_width = 768
model = dict(
    type='R2D2Model',
    text_image_encoder=dict(
        type='CrossEncoder', width=text_width, kv_width=768, num_layers=6,  # kv: the ViT width
        num_heads=12, dropout=0.1),
    image_text_encoder=dict(
        type='CrossEncoder', width=text_width, kv_width=text_width, num_layers=6,
        num_heads=12, dropout=0.1),
    itm_head=dict(type='ITMHead'),  # one on each cross encoder's first token
    objective=dict(
        _delete_=True,
        type='R2D2Objective',
        contrastive=dict(type='TargetDistillLoss', alpha=0.4),
        fgr=dict(type='FGRLoss', class_weight=(1.0, 2.0)),
        mlm_head=dict(type='MLMHead'),
        mlm=dict(type='MLMLoss'),
        enhanced_training=True,
        teacher=dict(type='MomentumTeacher', momentum=0.995),
        queue=dict(type='FeatureQueue', size=65536, decay=0.99),
        fgd=dict(type='FeatureGuidedDistiller', student_temp=0.1, teacher_temp=0.04, centre_momentum=0.9,
                 patch_drop_ratio=0.15),  # the FgD image student drops 15% of the patches
        text_mask_ratio=0.15,  # MLM and the FgD text student
        weights=dict(gcpr=1.0, fgr=1.0, fgd=1.0, mlm=1.0)),  # Eq. 8
)
