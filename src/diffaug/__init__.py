"""diffaug: diffusion-based data augmentation for medical image segmentation (DiffAug)."""

# OpenMP's wait policy is left at its default (short spin, then sleep). Measured on the 2-core
# reference machine, train_validator's step: 91 ms with the default against 140 ms with
# OMP_WAIT_POLICY=PASSIVE, whose sleeping threads pay a wake-up on every small parallel region.
# Two torch processes sharing the same cores turn this around (452 ms spinning against 192 ms
# passive), so whoever runs several at once (`dvc queue start -j 2`) exports
# OMP_WAIT_POLICY=PASSIVE before starting them (README, "Speed on a shared CPU").
