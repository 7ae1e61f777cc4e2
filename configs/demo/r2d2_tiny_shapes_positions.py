# Issue 20's position experiment: the demo (r2d2_tiny_shapes.py) with a fixed 2-D sine-cosine encoding of
# each patch's grid position added (after a LayerNorm) to the image tokens both cross encoders read
# (R2D2Model.fusion_positions, PositionalTokenProjection). Not the paper's: the official cross encoders read
# the ViT's last-layer tokens as they are. docs/design.md, "The demo trains the ViT", gives the result.
_base_ = ['./r2d2_tiny_shapes.py']

model = dict(fusion_positions=dict(type='PositionalTokenProjection', scale=2.0))
