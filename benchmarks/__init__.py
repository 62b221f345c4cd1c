"""Benchmarks and the scripts behind the measured tables of docs/, run from the repository root as
`python -m benchmarks.<name> [flags]` (each module's docstring gives its command); their results
are in benchmarks/results/."""
