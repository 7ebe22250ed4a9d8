"""Load order lines from CSV and JSON-lines objects in S3 into PostgreSQL, resumably.

``python -m pipeline load s3://bucket/prefix`` (see :mod:`pipeline.cli`); the work is in
:mod:`pipeline.load`, row validation in :mod:`pipeline.records`.
"""
