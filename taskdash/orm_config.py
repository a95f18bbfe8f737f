"""Tortoise config for the `tortoise` CLI (makemigrations): `tortoise -c taskdash.orm_config.TORTOISE_ORM`."""

from taskdash.config import load_settings, tortoise_config

TORTOISE_ORM = tortoise_config(load_settings())
