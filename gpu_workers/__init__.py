"""Django-free inference for the studio's GPU workers.

Importing this package is cheap on purpose: torch and diffusers are imported only by the
submodules (`config`, `pipelines`, `runner`, `tiny_models`), so web nodes can import
`gpu_workers.requests` without the `gpu` extra installed.
"""
