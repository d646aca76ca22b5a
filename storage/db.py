"""The database: chosen at run time from DATABASE_URL through a proxy, so models exist before it."""
from __future__ import annotations

import peewee
from playhouse.db_url import connect

database = peewee.DatabaseProxy()

DEFAULT_URL = "sqlite:///convoflow.db"
