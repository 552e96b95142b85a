"""txtoken: OAuth Transaction Tokens (draft-ietf-oauth-transaction-tokens) for Python services.

The core: claims, keys, minting, verification, key sources and the current transaction. Framework integrations live
in ``txtoken_asgi``, ``txtoken_grpc`` and ``txtoken_httpx``; the token service in ``txtoken.service``. Each framework
comes with an extra (``pip install 'txtoken[asgi]'``, ``[grpc]``, ``[server]``); see :mod:`txtoken.extras`.
"""

from txtoken.carrier import carried_token
from txtoken.claims import GRPC_METADATA_KEY, HTTP_HEADER, TXN_TOKEN_TYP, TxnTokenClaims
from txtoken.context import current_caller, current_transaction, require_transaction, use_transaction
from txtoken.errors import TxTokenError
from txtoken.keys import KeySet, SigningKey, VerificationKey, load_jwks
from txtoken.keysource import JwksFileKeySource, KeySource, RemoteJwksKeySource, StaticKeySource
from txtoken.mint import TxnTokenMinter
from txtoken.verify import TxnTokenVerifier, VerifiedTxnToken

__version__ = "0.1.0"

__all__ = [
    "GRPC_METADATA_KEY",
    "HTTP_HEADER",
    "TXN_TOKEN_TYP",
    "JwksFileKeySource",
    "KeySet",
    "KeySource",
    "RemoteJwksKeySource",
    "SigningKey",
    "StaticKeySource",
    "TxTokenError",
    "TxnTokenClaims",
    "TxnTokenMinter",
    "TxnTokenVerifier",
    "VerificationKey",
    "VerifiedTxnToken",
    "__version__",
    "carried_token",
    "current_caller",
    "current_transaction",
    "load_jwks",
    "require_transaction",
    "use_transaction",
]
