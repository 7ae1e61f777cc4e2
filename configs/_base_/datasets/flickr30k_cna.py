# Flickr30k-CNA (the R2D2 paper, Sec. 2.2): Flickr30k re-translated by linguists, one caption file per
# split (<id>#<n><TAB><caption>) beside Flickr30k's images. As Sec. 4.2 and Appendix C: train on the
# CNA training set, select on the CNA val set, and test on the Flickr30k-CN test set (the test loader
# of flickr30k_cn.py, data root data/flickr30k-cn), "for a fair comparison".
_base_ = ['./flickr30k_cn.py']

cna_root = 'data/flickr30k-cna'


def _cna_split(split):
    return dict(type='Flickr30kCNDataset', data_root=cna_root, ann_file=f'{split}/flickr30k_cna_{split}.txt',
                image_list=None)


train_dataloader = dict(dataset=_cna_split('train'))
val_dataloader = dict(dataset=_cna_split('val'))
