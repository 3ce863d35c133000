"""Storage (local, gs://, s3://), model files and the model registry.

Only this package knows about URIs; every stage works on local paths and uses
`tlt.io.storage` to stage inputs down and publish outputs up.
"""
