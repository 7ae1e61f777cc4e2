# COCO-CN (Li et al. 2019) as released (coco-cn-version1805v1.1) beside MS-COCO 2014's train2014/ and
# val2014/ folders: split lists and the human-written captions (Table A: 18.3K/20K train, 1K/1.1K val,
# 1K/1K test). Appendix C reports the test set; val selects the checkpoint.
_base_ = ['./jsonl_retrieval_224.py']

data_root = 'data/coco-cn'
release = 'coco-cn-version1805v1.1'


def _split(split):
    return dict(type='COCOCNDataset', data_root=data_root, split_file=f'{release}/coco-cn_{split}.txt',
                ann_file=f'{release}/imageid.human-written-caption.txt')


train_dataloader = dict(dataset=_split('train'))
val_dataloader = dict(dataset=_split('val'))
test_dataloader = dict(dataset=_split('test'))
