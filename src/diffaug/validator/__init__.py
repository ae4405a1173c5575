"""The validator (latent-space segmentation with single-step estimation, eq. 9-13) and the quality
gate (eq. 14). Public entry points:

- `diffaug.validator.loading.load_validator(dir, vae, device)` -> `Validator` with
  `predict(images uint8 (N,H,W,3), mode="single_step"|"iterative", steps) -> masks uint8 (N,H,W)`
- `diffaug.validator.stage_train_validator.run_train_validator(...)` (the train_validator stage) /
  `train_and_evaluate(...)` (arrays in, network + metrics out) / `diffaug.validator.train.train_network(...)`
- `diffaug.validator.stage_gate.run_gate(...)` (the gate stage); the gate itself:
  `diffaug.validator.gate.gate_samples(raw_dir, validator, cfg)` + `write_gate_outputs`
See docs/validator.md.
"""
