"""Release-engineering helpers imported by noxfile.py (not a distribution, never installed).

Everything here is standard library only, so the noxfile, pre-commit and the GitHub
workflows can run it with any Python 3.10+ without installing anything.
"""
