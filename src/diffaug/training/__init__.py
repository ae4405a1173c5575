"""The one training loop of the pipeline (`Trainer`), its schedule, its checkpoints and curves.

Every network the pipeline trains — the generator's three phases, the validator's mask codec and
network, the downstream segmenters — is a `Task` (its model, a batch draw and its losses) run by
`Trainer.fit`. See `diffaug.training.trainer` for the loop and `diffaug.training.state` for
checkpoints and the run fingerprint. The package imports nothing itself, so that reading params
(`diffaug.training.config`) does not import torch.
"""
