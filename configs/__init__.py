"""Experiment configs, installed with the package as `privjax.configs`.

Config files are loaded by path (`--config configs/default.py:ARGS`), never imported; outside a
clone `configs/...` names these installed files (privjax.config_args.resolve).
"""
