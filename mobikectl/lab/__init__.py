"""The multi-homed namespace lab with real strongSwan charons (see docs/lab.md).

api.Lab is the entry point; topology holds the addresses; cli is `mobikectl lab ...`.
"""
