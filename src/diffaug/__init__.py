"""diffaug: diffusion-based data augmentation for medical image segmentation (DiffAug)."""

import os as _os

# With OpenMP's default spin-wait, torch's worker threads burn their cores between parallel
# regions; on a 2-core machine that shares its cores with anything else (a second process,
# DVC, the test runner) small ops then slow down by one to two orders of magnitude. Passive
# waiting costs nothing measurable when the cores are free. Must be set before torch loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
