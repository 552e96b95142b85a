"""The calling workload of a request: its WIT, then its WPT, verified in that order (the Txn-Token comes after)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from txtoken.claims import HTTP_HEADER
from txtoken.errors import WitMissing, WitRejected, WorkloadAuthRejected, WptDuplicated, WptMissing
from txtoken.wimse.binding import WIT_HEADER, WPT_HEADER, access_token
from txtoken.wimse.wit import VerifiedWit, WitVerifier
from txtoken.wimse.wpt import VerifiedWpt, WptVerifier

__all__ = ["CallerVerifier", "VerifiedCaller"]

_WIT = WIT_HEADER.lower()
_WPT = WPT_HEADER.lower()
_TXN = HTTP_HEADER.lower()
_AUTHORIZATION = "authorization"


class VerifiedCaller:
    """An authenticated calling workload: ``workload`` is its WIT's ``sub``, with the verified WIT and WPT."""

    __slots__ = ("wit", "workload", "wpt")

    def __init__(self, wit: VerifiedWit, wpt: VerifiedWpt) -> None:
        self.wit = wit
        self.wpt = wpt
        self.workload = wit.workload

    def __repr__(self) -> str:
        return f"VerifiedCaller(workload={self.workload!r})"


class CallerVerifier:
    """Authenticates the calling workload from the ``Workload-Identity-Token`` and ``Workload-Proof-Token`` values.

    ``wit`` verifies the WIT against the trust domain's anchors; ``wpt`` (by default a :class:`WptVerifier` with an
    in-memory replay store) verifies the proof against it and the request. A missing WIT or WPT is refused.
    """

    def __init__(self, wit: WitVerifier, wpt: WptVerifier | None = None) -> None:
        self.wit_verifier = wit
        self.wpt_verifier = wpt if wpt is not None else WptVerifier()

    def verify(
        self,
        *,
        wit: str | None,
        wpt: str | None,
        audience: str | Collection[str],
        txn_token: str | None = None,
        access_token: str | None = None,
        other_tokens: Mapping[str, str] | None = None,
    ) -> VerifiedCaller:
        """The caller of a request that carried these values (None: the header was absent)."""
        if wit is None:
            raise WitMissing("the request carries no Workload-Identity-Token")
        verified_wit = self.wit_verifier.verify(wit)
        if wpt is None:
            raise WptMissing("the request carries no Workload-Proof-Token")
        verified_wpt = self.wpt_verifier.verify(
            wpt,
            wit=verified_wit,
            audience=audience,
            txn_token=txn_token,
            access_token=access_token,
            other_tokens=other_tokens,
        )
        return VerifiedCaller(verified_wit, verified_wpt)

    async def averify(
        self,
        *,
        wit: str | None,
        wpt: str | None,
        audience: str | Collection[str],
        txn_token: str | None = None,
        access_token: str | None = None,
        other_tokens: Mapping[str, str] | None = None,
    ) -> VerifiedCaller:
        """Like :meth:`verify`, without blocking the event loop (key fetch, replay store)."""
        if wit is None:
            raise WitMissing("the request carries no Workload-Identity-Token")
        verified_wit = await self.wit_verifier.averify(wit)
        if wpt is None:
            raise WptMissing("the request carries no Workload-Proof-Token")
        verified_wpt = await self.wpt_verifier.averify(
            wpt,
            wit=verified_wit,
            audience=audience,
            txn_token=txn_token,
            access_token=access_token,
            other_tokens=other_tokens,
        )
        return VerifiedCaller(verified_wit, verified_wpt)

    async def averify_http(
        self, headers: Iterable[tuple[str, str]], *, audience: str | Collection[str], required: bool = True
    ) -> VerifiedCaller | None:
        """The caller of an HTTP request with ``headers`` (lowercase names): its WIT and WPT, and the WPT bound to the
        request's ``Txn-Token``, access token (``Authorization``) and ``oth`` headers. None when the request carries
        neither WIT nor WPT and the caller is not ``required``; a repeated WIT, WPT or ``oth`` header is refused."""
        wanted: dict[str, list[str]] = {_WIT: [], _WPT: [], _TXN: [], _AUTHORIZATION: []}
        other = self.wpt_verifier.other_token_headers
        others: dict[str, list[str]] = {}
        for name, value in headers:
            found = wanted.get(name)
            if found is not None:
                found.append(value)
            elif name in other:
                others.setdefault(name, []).append(value)
        if not required and not wanted[_WIT] and not wanted[_WPT]:
            return None
        if len(wanted[_WIT]) > 1:
            raise WitRejected(f"more than one {WIT_HEADER} header")
        if len(wanted[_WPT]) > 1:
            raise WptDuplicated(f"more than one {WPT_HEADER} header")
        if any(len(values) > 1 for values in others.values()):
            raise WorkloadAuthRejected("a header covered by the WPT's oth appears more than once")
        return await self.averify(
            wit=next(iter(wanted[_WIT]), None),
            wpt=next(iter(wanted[_WPT]), None),
            audience=audience,
            txn_token=next(iter(wanted[_TXN]), None),
            access_token=access_token(next(iter(wanted[_AUTHORIZATION]), None)),
            other_tokens={name: values[0] for name, values in others.items()},
        )
