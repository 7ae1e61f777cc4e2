# Zero-shot image classification over an image folder (ELEVATER-style sets as Chinese-CLIP prepares
# them): <data_root>/test/<class folder>/*.jpg and <data_root>/label_cn.txt (line k = the Chinese name
# of the k-th class folder, or "<folder><TAB><name>" lines). Each class is embedded from Chinese prompts
# (ZeroShotClassificationDataset's default templates, or templates='<file>' / a list); top-1 and top-5
# accuracy. Test split only; the evaluation pipeline of jsonl_retrieval_224.py packs the class label.
_base_ = ['./jsonl_retrieval_224.py']

data_root = 'data/zero_shot_classification'
test_pipeline = [*_base_.test_pipeline[:-1], dict(type='PackInputs', meta_keys=['img_path'])]  # + gt_label
train_dataloader = val_dataloader = val_evaluator = None
test_dataloader = dict(dataset=dict(_delete_=True, type='ZeroShotClassificationDataset', data_root=data_root,
                                    data_prefix=dict(img_path='test'), class_file='label_cn.txt',
                                    pipeline=test_pipeline, test_mode=True))
test_evaluator = dict(_delete_=True, type='ZeroShotAccuracy', topk=(1, 5))
