"""Throughput and memory measurements of the pipeline's own models, and the `--check` comparison.

`diffaug.timing` times a callable (warm-up, repeats, median) and records its peak memory;
`measure` adds the injected slowdown, the device's name and the weights' memory; `suite` runs the
measurements on the trained artefacts; `check` compares a run's ratios with a baseline.
"""
