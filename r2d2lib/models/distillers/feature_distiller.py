"""Feature-guided distillation (FgD, Eq. 6-7): the centres, the image student's dropped patches, Eq. 7."""
from typing import Optional

import torch
from torch import Tensor, nn

from r2d2lib.models.losses import FeatureDistillLoss
from r2d2lib.models.utils import random_patch_keep
from r2d2lib.registry import DISTILLERS

from .feature_centre import FeatureCentre


@DISTILLERS.register_module()
class FeatureGuidedDistiller(nn.Module):
    """L_FgD (Eq. 7): the teacher's centred features of complete inputs guide the student's of masked ones.

        L_FgD = 1/2 [ L_c(P_s(I_masked), P_t(I)) + L_c(P_s(T_masked), P_t(T)) ]          (Eq. 7)

    with ``P_t = softmax((f_t - mu) / tau_t)`` and ``P_s = softmax(f_s / tau_s)`` (Eq. 6,
    :class:`~r2d2lib.models.losses.FeatureDistillLoss`), one centre ``mu`` per modality
    (:class:`FeatureCentre`, moved after each step by :meth:`update`). The image student is the
    model's image embedding with ``patch_drop_ratio`` of its patch tokens dropped after the position
    embedding (one extra image-encoder pass); the text student is the embedding of the masked text,
    which the objective encodes once for MLM and FgD.

    Args:
        dim: embedding width (filled in by the objective).
        student_temp: tau_s (0.1).
        teacher_temp: tau_t (0.04).
        centre_momentum: momentum of the centres (0.9, DINO's).
        patch_drop_ratio: share of patch tokens the image student does not see (0.15).
    """

    name = 'fgd'

    def __init__(self, dim: int, student_temp: float = 0.1, teacher_temp: float = 0.04,
                 centre_momentum: float = 0.9, patch_drop_ratio: float = 0.15):
        super().__init__()
        if not 0.0 <= patch_drop_ratio < 1.0:
            raise ValueError(f'patch_drop_ratio must be in [0, 1), got {patch_drop_ratio}')
        self.loss = FeatureDistillLoss(student_temp=student_temp, teacher_temp=teacher_temp)
        self.image_centre = FeatureCentre(dim, momentum=centre_momentum)
        self.text_centre = FeatureCentre(dim, momentum=centre_momentum)
        self.patch_drop_ratio = patch_drop_ratio

    def forward(self, model: nn.Module, images: Tensor, masked_text_embeds: Tensor, teacher_image: Tensor,
                teacher_text: Tensor, patch_keep: Optional[Tensor] = None) -> Tensor:
        """L_FgD of a batch: ``model`` encodes the image student (``patch_keep`` drawn if not given)."""
        if patch_keep is None:
            patch_keep = random_patch_keep(images.shape[0], model.image_encoder.num_patches,
                                           self.patch_drop_ratio, device=images.device)
        student_image = model.image_features(images, patch_keep=patch_keep)[1]
        image_term = self.loss(student_image, teacher_image, self.image_centre.centre)
        text_term = self.loss(masked_text_embeds, teacher_text, self.text_centre.centre)
        return (image_term + text_term) / 2

    @torch.no_grad()
    def update(self, teacher_image: Tensor, teacher_text: Tensor) -> None:
        """After the step: move both centres towards the batch means of the teacher's features."""
        self.image_centre.update(teacher_image)
        self.text_centre.update(teacher_text)
