"""Experiments that train and evaluate several runs: the paper's pipeline (`reproduce`), its sweep
over cut layers (`sweep`) and the privacy-utility frontier of the defences (`frontier`).

Each plans its runs and renders its table; `runner` trains and evaluates every plan the same way.
"""
