"""privjax: privacy-preserving split ("hybrid") deep inference in JAX (Osia et al., 2017).

The Python API (privjax.api): `load_run(workdir, step=None)`, `load_report(path_or_run_dir)`,
`compare(runs_or_reports)`, a pandas DataFrame with one row per run × setting × metric, and
`report_dir(run_dir)`, the folder of a run's evaluation report and pictures. They are loaded on first use (PEP 562), so `import privjax` loads neither jax nor
pandas, and the modules that must import fast (privjax.errors, privjax.config_args) stay so.
"""

__version__ = '0.2.0'
__all__ = ['compare', 'load_report', 'load_run', 'report_dir']


def __getattr__(name):
  if name in __all__:
    from privjax import api

    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted([*globals(), *__all__])
