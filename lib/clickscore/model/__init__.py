"""The sequence model: PyTorch only, no Spark imports, so it runs on any GPU box.

`config.ModelConfig` holds the hyper-parameters and the versions of the features and
vocabulary the model was trained on; `network.SequenceModel` is a SASRec-family causal
self-attention model with a next-item head (tied item embeddings) and a purchase-propensity
head; `metrics` ranks and scores predictions.
"""
