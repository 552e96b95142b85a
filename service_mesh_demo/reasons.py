"""Why a call was refused, in plain words: one sentence per stable error code, for the runner and the viewer alike.

Every hop report of a refusal carries its reason (``Hop.reason``); the runner prints it under the table and the
viewer under the refused arrow.
"""

from __future__ import annotations

__all__ = ["REASONS", "reason_for"]

REASONS = {
    "token_missing": "No Txn-Token came with the call: nothing inside the mesh answers without one.",
    "token_malformed": "What came as a Txn-Token is not a well-formed signed token.",
    "signature_invalid": "The signature does not verify with the TTS's published key: the TTS did not sign this.",
    "kid_unknown": "The token names a signing key the TTS never published.",
    "token_expired": "The token's short lifetime is over: a captured Txn-Token stops working within minutes.",
    "token_not_yet_valid": "The token claims to be issued in the future.",
    "aud_invalid": "The token is for another trust domain.",
    "binding_mismatch": "The token is genuine but signed for another request: its context does not match this one.",
    "insufficient_scope": "The token's scope does not cover this call.",
    "invalid_scope": "The TTS never widens a transaction's scope: the user did not grant what was asked for.",
    "invalid_client": "The TTS did not recognise the workload that asked.",
    "unauthorized_client": "This workload may not ask the TTS for that.",
    "access_denied": "The service's policy refuses this call.",
    "invalid_token": "The gateway needs a valid access token of the demo's IdP.",
    "wit_missing": "The caller sent no workload identity token: a Txn-Token alone no longer opens a call.",
    "wit_invalid": "The caller's workload identity token is not one the trust domain issued.",
    "wpt_signature_invalid": "The proof is not signed with the key of the caller's identity token: not its holder.",
    "wpt_replayed": "This proof was already used: a captured request cannot be sent again.",
    "wpt_aud_invalid": "The proof was made for another service or path.",
    "wpt_tth_mismatch": "The proof was made for another Txn-Token.",
    "caller_not_allowed": "The caller is authenticated, but this route takes calls only from other workloads.",
}


def reason_for(code: str) -> str:
    """The plain-language reason for a refusal with ``code`` (a generic one for a code without its own)."""
    return REASONS.get(code, f"Refused with the stable error code {code}.")
