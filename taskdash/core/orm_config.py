"""Tortoise config for the `tortoise` CLI.

.venv/bin/tortoise -c taskdash.core.orm_config.TORTOISE_ORM makemigrations --name what_changed
"""

from taskdash.core.config import load_settings
from taskdash.core.db import tortoise_config

TORTOISE_ORM = tortoise_config(load_settings())
