"""The parts a node is built of that depend on its config alone: the store the URL
names, and each provider's adapter (in a worker process where its settings ask)."""

from __future__ import annotations

from smppbridge.config import Config
from smppbridge.core.ports import Provider, Store
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.providers import build_provider
from smppbridge.providers.worker import WorkerProvider
from smppbridge.store.sqlite.store import SqliteStore

__all__ = ["build_provider_for", "open_store"]

def open_store(config: Config) -> Store:
    """The store named by ``[store] url`` (not yet opened)."""
    url = config.store.url
    if url.startswith("memory:"):
        return SqliteStore(":memory:")
    if url.startswith(("redis-cluster:", "rediss-cluster:")):
        from smppbridge.store.redis.sharded import ShardedRedisStore

        return ShardedRedisStore.from_url(url, history_days=config.store.history_days)
    if url.startswith(("redis:", "rediss:")):
        from smppbridge.store.redis.store import RedisStore

        return RedisStore.from_url(url, history_days=config.store.history_days)
    return SqliteStore.from_url(url)


def build_provider_for(config: Config, settings: ProviderSettings) -> Provider:
    """A provider's adapter, in a worker process when its settings ask for one."""
    provider = build_provider(settings)
    if settings.worker:
        return WorkerProvider(provider, settings, log=(config.log.level, config.log.format))
    return provider
