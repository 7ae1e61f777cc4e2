# Pre-training on the Zero corpus (Appendix A): a train.parquet / .csv / .jsonl table of
# title, content and image query per image, with the images in data_root/images. Every epoch
# draws one of the three texts per image (ZeroCorpusDataset); DatasetEpochSampler hands the
# epoch to the dataset. Validation and test read JSON-lines pairs as jsonl_retrieval_224.py.
# For 23M+ pairs from webdataset shards see docs/datasets.md (ZeroCorpusShardDataset).
_base_ = ['./jsonl_retrieval_224.py']

train_dataloader = dict(
    sampler=dict(type='DatasetEpochSampler', shuffle=True),
    dataset=dict(_delete_=True, type='ZeroCorpusDataset', data_root='data/zero', ann_file='train.parquet',
                 data_prefix=dict(img_path='images'), seed=0, pipeline={{_base_.train_pipeline}}),
)
