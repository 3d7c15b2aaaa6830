"""What a trained run is asked after training: evaluate, predict, ensembles, cross-validation.

The choices the CLI's parser and the pages offer live here, numpy- and torch-free, so that
naming them does not import numpy into every command's start (about 45 ms of it).
"""

EVAL_SPLITS = ("val", "test")
EVAL_BATCH_SIZE = 256
ENSEMBLE_METHODS = ("soft", "hard", "weighted", "stacking")  # core.analyze.combiners
