"""The Txn-Token Service (TTS): the only component that signs Txn-Tokens.

:func:`create_app` builds the Starlette app from :class:`ServiceSettings` (see :func:`load_settings`);
``txtoken serve`` runs it with uvicorn. :class:`AccessTokenValidator` is the TTS's own access-token validation,
public so that the inbound gateway (:mod:`txtoken.gateway`) validates with the same code.
"""

from txtoken.extras import requires_extra

with requires_extra("server", "the Txn-Token Service (txtoken.service)"):
    from txtoken.service.accesstoken import AccessToken, AccessTokenValidator, issuer_configs
    from txtoken.service.app import TokenService, create_app
    from txtoken.service.config import ServiceSettings, load_settings
    from txtoken.service.exchange import CHAIN_CLAIM
    from txtoken.service.keystore import KeyStore, rotate_keys

__all__ = [
    "CHAIN_CLAIM",
    "AccessToken",
    "AccessTokenValidator",
    "issuer_configs",
    "KeyStore",
    "ServiceSettings",
    "TokenService",
    "create_app",
    "load_settings",
    "rotate_keys",
]
