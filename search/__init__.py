"""search: the distributed hyperparameter search around `adder` (Ray Tune, Optuna, ASHA, W&B)."""
