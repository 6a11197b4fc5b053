"""What the Redis store's test modules share besides their fixtures (conftest.py): the
test database's URL and the factory type of ``make_store``."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from smppbridge.store.redis.store import RedisStore

REDIS_URL = os.environ.get("SMPPBRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")

StoreFactory = Callable[..., Awaitable[RedisStore]]
