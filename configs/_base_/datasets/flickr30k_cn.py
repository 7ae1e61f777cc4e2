# Flickr30k-CN (Lan et al. 2017) as released: one VisualSearch collection per split, machine-translated
# train/val and human-translated test captions of Flickr30k's images (Table A: 29.7K/148.9K train,
# 1K/5K val, 1K/5K test). Appendix C reports the test set; val selects the checkpoint. 224 px pipelines
# and loaders of jsonl_retrieval_224.py. Layout: docs/datasets.md.
_base_ = ['./jsonl_retrieval_224.py']

data_root = 'data/flickr30k-cn'
image_prefix = dict(img_path='flickr30k-images')


def _collection(name):
    """Caption file and image list of one VisualSearch collection."""
    return dict(type='Flickr30kCNDataset', data_root=data_root, data_prefix=image_prefix,
                ann_file=f'{name}/TextData/seg.{name}.caption.txt', image_list=f'{name}/ImageSets/{name}.txt')


train_dataloader = dict(dataset=_collection('flickr30kzhbbosontrain'))
val_dataloader = dict(dataset=_collection('flickr30kzhbbosonval'))
test_dataloader = dict(dataset=_collection('flickr30kzhmbosontest'))
