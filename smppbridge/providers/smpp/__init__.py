"""The ``smpp`` provider type: the node binds as an ESME to an upstream SMSC.

``outbound.py`` turns a message into its submit_sm (data_coding policy, long
messages), ``correlate.py`` matches upstream message ids and receipts (pure, time as a
parameter), ``link.py`` is the asyncio glue of one connection around the sans-IO
:class:`smppbridge.smpp.client.EsmeSession`, ``provider.py`` the
:class:`~smppbridge.core.ports.Provider` over all the upstream's sessions.
"""
