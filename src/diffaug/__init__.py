"""diffaug: diffusion-based data augmentation for medical image segmentation (DiffAug).

The method is that of Nazir, Aqeel, Setti, "Diffusion-Based Data Augmentation for Medical Image
Segmentation" (arXiv 2508.17844). "The paper", "eq. N" and "table N" in this package's docstrings
and comments refer to it.
"""

# OpenMP's wait policy is left at its default (short spin, then sleep): alone on its cores a
# stage runs faster that way than with OMP_WAIT_POLICY=PASSIVE, whose sleeping threads pay a
# wake-up on every small parallel region. Several torch processes sharing the same cores turn
# this around, so whoever runs several at once (`dvc queue start -j 2`) exports
# OMP_WAIT_POLICY=PASSIVE before starting them (README, "Speed on a shared CPU").
