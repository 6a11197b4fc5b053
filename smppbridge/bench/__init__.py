"""Performance harness: a load generator, a bare-echo SMSC baseline and a scenario
runner that measures ``smppbridge serve`` against it (``python -m smppbridge.bench``).

See ``benchmarks/README.md`` for what each scenario measures.
"""

from __future__ import annotations

from smppbridge.bench.loadgen import LoadConfig, LoadError, LoadGenerator, LoadResult, run_load

__all__ = ["LoadConfig", "LoadError", "LoadGenerator", "LoadResult", "run_load"]
