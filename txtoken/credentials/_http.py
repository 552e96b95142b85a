"""One blocking HTTP GET for the local-API and CI sources: short timeout, no redirects, bounded body, clear errors.

Redirects are never followed: an identity endpoint that redirects is misconfigured or being abused (Workload
Identity Practices §3.3 on SSRF through redirects). Error messages name the endpoint and the status, never a header
or body, since either may carry a credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import httpx

from txtoken.errors import CredentialUnavailable

__all__ = ["MAX_RESPONSE_SIZE", "HttpAnswer", "http_get"]

#: A credential response larger than this is refused.
MAX_RESPONSE_SIZE = 64 * 1024


class HttpAnswer(NamedTuple):
    headers: httpx.Headers
    body: bytes


def http_get(
    url: str,
    *,
    endpoint: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    timeout: float,
    trust_env: bool = False,
    hints: Mapping[int, str] | None = None,
) -> HttpAnswer:
    """GET ``url`` and return the headers and body of its 200 response; anything else is :class:`CredentialUnavailable`.

    ``params`` are merged into the query ``url`` already has. ``endpoint`` names the service in error messages;
    ``hints`` adds advice for particular status codes.
    """
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=trust_env) as client,
            client.stream("GET", httpx.URL(url).copy_merge_params(params), headers=headers) as response,
        ):
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_SIZE:
                    raise CredentialUnavailable(f"{endpoint} sent a response larger than {MAX_RESPONSE_SIZE} B")
    except httpx.TimeoutException:
        raise CredentialUnavailable(f"{endpoint} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise CredentialUnavailable(f"{endpoint} cannot be reached ({type(exc).__name__})") from None
    status = response.status_code
    if response.is_redirect:
        raise CredentialUnavailable(f"{endpoint} answered with a redirect ({status}), which is not followed")
    if status != 200:
        hint = (hints or {}).get(status)
        raise CredentialUnavailable(f"{endpoint} answered HTTP {status}" + (f": {hint}" if hint else ""))
    return HttpAnswer(response.headers, bytes(body))
