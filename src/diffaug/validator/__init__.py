"""The validator (latent-space segmentation with single-step estimation, eq. 9-13) and the quality
gate (eq. 14). Public entry points:

- `diffaug.validator.loading.load_validator(dir, vae, device)` -> `Validator` with
  `predict(images uint8 (N,H,W,3), mode="single_step"|"iterative", steps) -> masks uint8 (N,H,W)`
- `diffaug.validator.fit.train_validator(...)` / `diffaug.validator.train.train_network(...)`
- `diffaug.validator.gate.run_gate(raw_dir, validator, cfg)` + `write_gate_outputs`
See docs/validator.md.
"""
