"""The provider simulator (``smppbridge simulator``): the provider APIs on loopback."""

from smppbridge.simulator.app import Simulator, build_router, run_simulator

__all__ = ["Simulator", "build_router", "run_simulator"]
