"""Where data loads: the GLUE tasks and everything about their data.

    tasks.py    the task registry: columns, labels, validation splits, the paper's metric and task order, sizes
    metrics.py  metrics with scikit-learn / scipy (MCC, accuracy, F1, Pearson, Spearman), collapse detection
    data.py     loading (hub or local Parquet mirror), subsampling, cached tokenization, dynamic padding, batches
    splits.py   the split protocols: glue_dev, sora (SoRA's), holdout (10% of train selects)
"""
