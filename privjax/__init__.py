"""privjax: privacy-preserving split ("hybrid") deep inference in JAX (Osia et al., 2017)."""

__version__ = '0.2.0'
