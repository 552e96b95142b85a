"""CI/CD OIDC tokens: GitHub Actions and GitLab CI (Workload Identity Practices §4.4).

GitHub Actions: a job with ``permissions: id-token: write`` gets ``ACTIONS_ID_TOKEN_REQUEST_URL`` and
``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; ``GET <url>&audience=<aud>`` with ``Authorization: bearer <request token>``
answers ``{"value": "<JWT>"}``. GitLab CI: the job declares ``id_tokens:`` in ``.gitlab-ci.yml`` and receives each
ID token in a variable it names.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping

import httpx

from txtoken.credentials._audience import AudienceSource
from txtoken.credentials._cache import DEFAULT_REFRESH_MARGIN
from txtoken.credentials._http import http_get
from txtoken.credentials._jwt import jwt_credential
from txtoken.credentials.base import Credential
from txtoken.credentials.env import EnvCredentialSource
from txtoken.errors import ConfigurationError, CredentialUnavailable

__all__ = [
    "GITHUB_REQUEST_TOKEN_VARIABLE",
    "GITHUB_REQUEST_URL_VARIABLE",
    "GitHubActionsOidcSource",
    "GitLabIdTokenSource",
]

GITHUB_REQUEST_URL_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_URL"
GITHUB_REQUEST_TOKEN_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
_GITHUB_HINT = "run inside a GitHub Actions job whose workflow grants `permissions: id-token: write`"


class GitHubActionsOidcSource(AudienceSource):
    """GitHub Actions OIDC ID tokens for ``audience`` (or the audience given to :meth:`get`), cached per audience.

    The request URL must be https unless ``allow_http`` is set (tests): the request token is a bearer secret.
    Proxy settings from the environment are honoured, as the Actions toolkit does on self-hosted runners.
    ``environ`` defaults to ``os.environ``.
    """

    def __init__(
        self,
        audience: str,
        *,
        environ: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        allow_http: bool = False,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(audience, refresh_margin=refresh_margin, clock=clock)
        if not timeout > 0:
            raise ConfigurationError("timeout must be more than zero seconds")
        self._environ = os.environ if environ is None else environ
        self._timeout = timeout
        self._allow_http = allow_http

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.audience!r})"

    def _variable(self, name: str) -> str:
        value = self._environ.get(name, "").strip()
        if not value:
            raise CredentialUnavailable(f"GitHub Actions OIDC: {name} is not set; {_GITHUB_HINT}")
        return value

    def _fetch(self, audience: str) -> Credential:
        url = httpx.URL(self._variable(GITHUB_REQUEST_URL_VARIABLE))
        request_token = self._variable(GITHUB_REQUEST_TOKEN_VARIABLE)
        if url.scheme != "https" and not (self._allow_http and url.scheme == "http"):
            raise CredentialUnavailable(f"GitHub Actions OIDC: {GITHUB_REQUEST_URL_VARIABLE} is not an https URL")
        endpoint = f"the GitHub Actions OIDC endpoint at {url.scheme}://{url.netloc.decode('ascii')}"
        answer = http_get(
            str(url),
            endpoint=endpoint,
            params={"audience": audience},
            headers={"Authorization": f"bearer {request_token}", "Accept": "application/json"},
            timeout=self._timeout,
            trust_env=True,
            hints={
                401: f"the request token was refused; {_GITHUB_HINT}",
                403: f"the job may not request ID tokens; {_GITHUB_HINT}",
            },
        )
        try:
            document = json.loads(answer.body)
        except ValueError:
            raise CredentialUnavailable(f"{endpoint} sent an answer that is not JSON") from None
        token = document.get("value") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise CredentialUnavailable(f"{endpoint} sent JSON without a 'value' string")
        return jwt_credential(token, origin=f"the ID token from {endpoint}", now=self._clock())


class GitLabIdTokenSource(EnvCredentialSource):
    """A GitLab CI ID token from the variable the job's ``id_tokens:`` section declares (its name is yours to pick).

    The token is a JWT with the ``aud`` declared there, valid for the job; it is not served once expired.
    """

    def __init__(
        self,
        variable: str,
        *,
        environ: Mapping[str, str] | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # A job-scoped, short-lived ID token is GitLab's documented delivery, so no production warning.
        super().__init__(
            variable, development=True, jwt=True, environ=environ, refresh_margin=refresh_margin, clock=clock
        )

    def _missing(self) -> str:
        return (
            f"GitLab CI: the variable {self.variable} is not set; declare it in the job's `id_tokens:` section of "
            f".gitlab-ci.yml, for example `{self.variable}: {{aud: <TTS identifier>}}`"
        )
