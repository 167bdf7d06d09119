"""Benchmarks of the web tier and the distributed mode, run by `make bench*` from a checkout.

Development tooling, kept out of the runtime packages: no web node or worker imports it and
the wheel does not ship it (pyproject's package list). Each module is run with
`python -m bench.<name> --help`; their numbers go to docs/BENCHMARKS.md.

- `events`: event latency from a worker's publish to a logged-in browser socket (`make bench`).
- `gallery`: gallery and studio pages with 10,000 images on PostgreSQL (`make bench-gallery`).
- `load`: locust users (`load_users`) against uvicorn workers (`make bench-load`).
- `policy`: the worst prompt-policy regex on a long prompt (`make bench-policy`).
- `uploads`: peak memory of the largest and most hostile uploads (`make bench-uploads`).
- `faults`: worker-kill recovery and scaling on real processes (`make bench-faults`).

The engine's CPU and GPU benchmarks run on workers without Django: `gpu_workers/bench/`.
"""
