import subprocess
import sys


def test_package_is_cheap_to_import_and_never_imports_django():
    # Web nodes import gpu_workers.requests, .samplers and .control without torch; workers
    # never need Django.
    code = """
import sys
import gpu_workers, gpu_workers.requests, gpu_workers.samplers, gpu_workers.control
assert "torch" not in sys.modules, "importing gpu_workers imported torch"
import gpu_workers.config, gpu_workers.pipelines, gpu_workers.runner, gpu_workers.tiny_models
assert "django" not in sys.modules, "gpu_workers imported django"
"""
    subprocess.run([sys.executable, "-c", code], check=True)
