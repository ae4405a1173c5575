"""Thin per-stage CLI wrappers: one file per dvc.yaml stage, each exposing `main`."""
