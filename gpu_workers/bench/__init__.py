"""Benchmarks of the worker; their numbers live in docs/BENCHMARKS.md.

- `engine_cpu`: the batching engine vs plain diffusers on the tiny model on this CPU.
- `gpu`: the same comparison at real model sizes on a GPU, against the FLOP floor.
- `report`: writes their sections of docs/BENCHMARKS.md.
- Event latency worker → browser socket needs Django: `python -m bench.events` (the
  web tier's benchmarks live in the top-level `bench/` package).

`make bench` runs the CPU ones and rewrites the CPU section.
"""
