"""The app factory a process manager imports to serve the TTS (uvicorn ``--factory``, gunicorn).

It reads the file named by ``TXTOKEN_CONFIG`` (else the embedded development default), with the ``TXTOKEN_*``
overrides as always::

    TXTOKEN_CONFIG=/etc/txtoken/tts.toml \\
        uvicorn --factory txtoken.service.serving:create_app_from_env --no-proxy-headers
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

__all__ = ["APP_FACTORY", "CONFIG_ENV", "create_app_from_env"]

#: The environment variable naming the TOML configuration file.
CONFIG_ENV = "TXTOKEN_CONFIG"
#: The factory, as a process manager names it.
APP_FACTORY = "txtoken.service.serving:create_app_from_env"


def create_app_from_env() -> Starlette:
    """The TTS app from ``$TXTOKEN_CONFIG`` (or the embedded development default); each worker process calls it.

    Replicas and workers share keys through the configured key directory, as replicas do. The garbage collector is
    frozen at startup (see :func:`~txtoken.service.create_app`), which suits a process that only serves the TTS.
    """
    from txtoken.service import create_app, load_settings
    from txtoken.service.defaults import embedded_settings

    path = os.environ.get(CONFIG_ENV)
    settings = load_settings(path) if path else embedded_settings()
    return create_app(settings, freeze_gc=True)
