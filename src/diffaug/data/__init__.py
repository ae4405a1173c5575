"""The `prepare` stage: phantom generator, real data-set adapters, prepared-data writer/loader.

Later stages read the prepared folder only through `diffaug.data.prepared`:
`load_split(dir, "train" | "test" | "normals" | "mask_bank")`, `load_fingerprint(dir)`,
`load_manifest(dir)`.
"""
