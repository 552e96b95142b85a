"""An identity token from the cloud instance-metadata service (a local API, Workload Identity Practices §3.3, §4.3).

GCP by default: ``GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity
?audience=AUD`` with the header ``Metadata-Flavor: Google``; the body is the JWT, and the answer carries the same
header back, which is checked so that something else answering on that name is not trusted. :meth:`azure` gives the
Azure IMDS form. The endpoint comes from configuration only; redirects are not followed; the timeout is short,
since the service is local and a workload off the cloud should fail fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

import httpx

from txtoken.credentials._audience import AudienceSource
from txtoken.credentials._cache import DEFAULT_REFRESH_MARGIN
from txtoken.credentials._http import http_get
from txtoken.credentials._jwt import jwt_credential
from txtoken.credentials.base import Credential
from txtoken.errors import ConfigurationError, CredentialUnavailable

__all__ = ["AZURE_IMDS_TOKEN_URL", "GCP_IDENTITY_URL", "GCP_METADATA_HEADERS", "MetadataIdentitySource"]

GCP_IDENTITY_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity"
GCP_METADATA_HEADERS: Mapping[str, str] = {"Metadata-Flavor": "Google"}
AZURE_IMDS_TOKEN_URL = "http://169.254.169.254/metadata/identity/oauth2/token"
_AZURE_API_VERSION = "2018-02-01"


class MetadataIdentitySource(AudienceSource):
    """Identity tokens for ``audience`` (or the audience given to :meth:`get`) from an instance-metadata endpoint.

    - ``headers``: sent with every request (the provider's anti-SSRF header).
    - ``audience_param`` and ``params``: the query; the audience goes in ``audience_param``.
    - ``token_field``: None if the body is the token, else the member of a JSON body that holds it.
    - ``response_headers``: headers the answer must carry to be trusted.

    Tokens are cached per audience.
    """

    def __init__(
        self,
        audience: str,
        *,
        url: str = GCP_IDENTITY_URL,
        headers: Mapping[str, str] = GCP_METADATA_HEADERS,
        audience_param: str = "audience",
        params: Mapping[str, str] | None = None,
        token_field: str | None = None,
        response_headers: Mapping[str, str] = GCP_METADATA_HEADERS,
        timeout: float = 2.0,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(audience, refresh_margin=refresh_margin, clock=clock)
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigurationError("the metadata endpoint must be an http or https URL")
        if not timeout > 0:
            raise ConfigurationError("timeout must be more than zero seconds")
        self.url = url
        self._headers = dict(headers)
        self._audience_param = audience_param
        self._params = dict(params or {})
        self._token_field = token_field
        self._response_headers = dict(response_headers)
        self._timeout = timeout
        self._endpoint = f"the metadata service at {parsed.copy_with(query=None)}"

    @classmethod
    def azure(
        cls,
        resource: str,
        *,
        client_id: str | None = None,
        url: str = AZURE_IMDS_TOKEN_URL,
        timeout: float = 2.0,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> MetadataIdentitySource:
        """Azure IMDS managed identity: ``Metadata: true``, ``resource`` as the audience, a JSON ``access_token``.

        ``client_id`` picks a user-assigned managed identity.
        """
        params = {"api-version": _AZURE_API_VERSION}
        if client_id is not None:
            params["client_id"] = client_id
        return cls(
            resource,
            url=url,
            headers={"Metadata": "true"},
            audience_param="resource",
            params=params,
            token_field="access_token",
            response_headers={},
            timeout=timeout,
            refresh_margin=refresh_margin,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.audience!r}, url={self.url!r})"

    def _fetch(self, audience: str) -> Credential:
        answer = http_get(
            self.url,
            endpoint=self._endpoint,
            params={**self._params, self._audience_param: audience},
            headers=self._headers,
            timeout=self._timeout,
            hints={
                400: f"check the {self._audience_param!r} parameter and the other query parameters",
                403: f"the service requires the request headers {sorted(self._headers)} (is this the right endpoint?)",
                404: "no such endpoint or identity on this instance",
            },
        )
        for name, value in self._response_headers.items():
            if answer.headers.get(name) != value:
                raise CredentialUnavailable(f"{self._endpoint} answered without the header {name}: {value}")
        token = self._token(answer.body)
        return jwt_credential(token, origin=f"the token from {self._endpoint}", now=self._clock())

    def _token(self, body: bytes) -> str:
        try:
            text = body.decode("utf-8")
            if self._token_field is None:
                return text.strip()
            document = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise CredentialUnavailable(f"{self._endpoint} sent an answer that is not UTF-8 JSON or text") from None
        token = document.get(self._token_field) if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise CredentialUnavailable(f"{self._endpoint} sent JSON without a {self._token_field!r} string")
        return token
