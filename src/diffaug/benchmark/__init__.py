"""Throughput and memory measurements of the pipeline's own models, and the `--check` comparison.

`measure` times a callable (warm-up, repeats, median) and records its peak memory; `suite` runs
the measurements on the trained artefacts; `check` compares a run's ratios with a baseline.
"""
