"""Benchmarks (`python -m tinybin bench conv|data|train|infer`): each module's `run(...)` prints
its table and returns its figures as a dict; every time is taken by `timer.median_ms`."""
