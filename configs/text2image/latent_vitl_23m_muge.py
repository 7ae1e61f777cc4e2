# Latent text-to-image on MUGE (e-commerce product images with Chinese queries, Multimodal Understanding and
# Generation Evaluation; its own text-to-image track uses the same kind of data), conditioned on R2D2 ViT-L
# (23M)'s text encoder; evaluated on one image per valid image from its first query.
_base_ = ['./_base_/latent_vitl_23m.py']

data_root = 'data/MUGE'


def _split(split, pipeline):
    return dict(type='MUGEDataset', data_root=data_root, ann_file=f'{split}_texts.jsonl',
                img_file=f'{split}_imgs.tsv', pipeline=pipeline)


train_dataloader = dict(dataset=_split('train', {{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(type='ImageCaptionsDataset', pipeline={{_base_.test_pipeline}},
                                   test_mode=True, dataset=_split('valid', [])))
test_dataloader = val_dataloader
