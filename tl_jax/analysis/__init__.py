"""Offline transfer tools on a trained or pretrained backbone: feature extraction and its cache,
linear probes, few-shot episodes, transferability scores, TrAdaBoost, UDA validation, MAML."""
