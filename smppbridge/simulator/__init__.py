"""The provider simulator (``smppbridge simulator``): the provider APIs on loopback."""

from smppbridge.simulator.app import Simulator, build_router, run_simulator
from smppbridge.simulator.config import Rule, SimConfig
from smppbridge.simulator.engine import SimEngine

__all__ = ["Rule", "SimConfig", "SimEngine", "Simulator", "build_router", "run_simulator"]
