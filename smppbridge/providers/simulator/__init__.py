"""The provider simulator's engine (messages, statuses over time, injected faults), its
settings, and the in-process ``simulator`` provider built on it. The standalone HTTP
simulator (``smppbridge simulator``, :mod:`smppbridge.simulator`) serves the same engine
behind the real providers' APIs."""
