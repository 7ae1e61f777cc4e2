# MUGE multimodal retrieval (Lin et al. 2021) in Chinese-CLIP's layout: <split>_imgs.tsv (id, base64
# JPEG) and <split>_texts.jsonl (text_id, text, image_ids) (Table A: 129.4K/248.8K train,
# 29.8K/5K valid). Text-to-image only (queries retrieve product images; "we only provide IR scores on
# MUGE"), on the validation set since the test set is not released (Appendix C); R@M is the mean of
# the three t2i recalls.
_base_ = ['./jsonl_retrieval_224.py']

data_root = 'data/MUGE'


def _split(split):
    return dict(type='MUGEDataset', data_root=data_root, ann_file=f'{split}_texts.jsonl',
                img_file=f'{split}_imgs.tsv')


train_dataloader = dict(dataset=_split('train'))
val_dataloader = dict(dataset=_split('valid'))
test_dataloader = dict(dataset=_split('valid'))
val_evaluator = dict(type='RetrievalMetric', directions=('t2i', ))
test_evaluator = val_evaluator
