"""The scripted scenario: one legitimate purchase, then the attacks txtoken must stop, each with its expected outcome.

Every step sends its first request with a trace label (``x-demo-trace``); the services' hop reports, collected by the
gateway, then show what each hop saw and decided.

Every hop checks the caller's WIT and WPT (WIMSE) before the Txn-Token. The attacker of the Txn-Token steps has
compromised the gateway's credential, so its calls carry the gateway's identity and a valid proof: what stops them is
the Txn-Token checks. The WIMSE steps show what the binding of the Txn-Token to the call stops.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from service_mesh_demo.hops import TRACE_HEADER
from service_mesh_demo.inventory import RESERVE, encode_message
from service_mesh_demo.mesh import MeshAddresses
from service_mesh_demo.topology import TRUST_DOMAIN, TTS_IDENTIFIER
from txtoken.claims import HTTP_HEADER, TOKEN_TYPE_ACCESS_TOKEN
from txtoken.client import TokenServiceClient
from txtoken.credentials import FileCredentialSource, TokenServiceWitSource
from txtoken.keys import KeySet, SigningKey
from txtoken.mint import TxnTokenMinter, encode_jws
from txtoken.wimse import WIT_HEADER, WIT_METADATA_KEY, WPT_HEADER, WPT_METADATA_KEY, create_wpt, grpc_audience

__all__ = ["Outcome", "Step", "StepResult", "run_scenario"]


@dataclass(frozen=True)
class Outcome:
    """What the caller saw: ``ok``, or the stable error code of the refusal, and the status."""

    verdict: str
    status: str


@dataclass
class Step:
    label: str
    expected: str
    explanation: str
    run: Callable[[Scene, str], Outcome]


@dataclass
class StepResult:
    step: Step
    trace: str
    outcome: Outcome
    hops: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.outcome.verdict == self.step.expected


class Scene:
    """The running mesh, seen from outside: alice's access token, and an attacker's reach into the mesh."""

    def __init__(self, mesh: MeshAddresses) -> None:
        self.mesh = mesh
        self.http = httpx.Client(timeout=20.0)
        form = {"grant_type": "password", "username": "alice", "password": "wonderland"}
        self.access_token = str(self.http.post(f"{mesh.url('idp')}/token", data=form).json()["access_token"])
        self.placed: dict[str, Any] = {}
        gateway_credential = FileCredentialSource(mesh.data_dir / "tokens" / "gateway" / "token")
        self.gateway_identity = TokenServiceWitSource(
            f"{mesh.url('tts')}/wit", credential=gateway_credential, audience=TTS_IDENTIFIER, allow_http=True
        )

    def warm_up(self) -> None:
        """One purchase without a trace label (no hop reports): connections, key caches and the services' first-call
        work are set up, so the purchase the scenario shows takes its steady-state time."""
        headers = {"authorization": f"Bearer {self.access_token}"}
        order = {"item": "widget", "quantity": 1}
        self.http.post(f"{self.mesh.url('gateway')}/api/orders", json=order, headers=headers)

    def outcome(self, response: httpx.Response) -> Outcome:
        if response.status_code < 400:
            return Outcome("ok", str(response.status_code))
        try:
            code = str(response.json().get("error", "error"))
        except ValueError:
            code = "error"
        return Outcome(code, str(response.status_code))

    def gateway(self, path: str, trace: str, body: dict[str, Any]) -> Outcome:
        headers = {"authorization": f"Bearer {self.access_token}", TRACE_HEADER: trace}
        response = self.http.post(f"{self.mesh.url('gateway')}{path}", json=body, headers=headers)
        if response.status_code == 200:
            self.placed = response.json()
        return self.outcome(response)

    def captured_token(self, order_id: str) -> str:
        """A genuine Txn-Token for ``order_id``, as an attacker inside the mesh could capture it on the wire."""
        credential = FileCredentialSource(self.mesh.data_dir / "tokens" / "gateway" / "token")
        # Plain http inside the demo's network only (compose hosts are not loopback): https in production.
        with TokenServiceClient(
            f"{self.mesh.url('tts')}/token", credential=credential, trust_domain=TRUST_DOMAIN, allow_http=True
        ) as tts:
            return tts.exchange(
                subject_token=self.access_token,
                subject_token_type=TOKEN_TYPE_ACCESS_TOKEN,
                scope="orders.create inventory.reserve payments.charge",
                request_details={"order_id": order_id, "item": "widget", "quantity": 1, "amount": "12.50"},
            ).access_token

    def tts_keys(self) -> KeySet:
        return KeySet.load(Path(self.mesh.data_dir, "tts", "keys.json"))

    def proof(self, audience: str, token: str | None, *, key: SigningKey | None = None) -> dict[str, str]:
        """The gateway's WIT and a WPT for ``audience`` bound to ``token``, signed with ``key`` (default: the WIT's)."""
        me = self.gateway_identity.get()
        wpt = create_wpt(key or me.key, wit=me.wit, audience=audience, txn_token=token)
        return {WIT_HEADER: me.wit, WPT_HEADER: wpt}

    def present(
        self,
        service: str,
        path: str,
        trace: str,
        token: str | None,
        *,
        proof: dict[str, str] | None = None,
        **params: str,
    ) -> Outcome:
        """A call straight to ``service`` with ``token``; with the gateway's WIT and a valid WPT unless ``proof``."""
        url = f"{self.mesh.url(service)}{path}"
        headers = {TRACE_HEADER: trace, **({HTTP_HEADER: token} if token else {})}
        headers.update(self.proof(url, token) if proof is None else proof)
        return self.outcome(self.http.post(url, params=params, json={}, headers=headers))

    def close(self) -> None:
        self.http.close()


def _purchase(scene: Scene, trace: str) -> Outcome:
    return scene.gateway("/api/orders", trace, {"item": "widget", "quantity": 2})


def _replay(scene: Scene, trace: str) -> Outcome:
    token = scene.captured_token("o-1111aaaa")
    return scene.present("orders", "/orders/o-2222bbbb", trace, token)


def _forged(scene: Scene, trace: str) -> Outcome:
    genuine = scene.tts_keys().active
    attacker = SigningKey("ES256", SigningKey.generate("ES256").private_key, kid=genuine.kid)  # the TTS's kid, own key
    now = int(time.time())
    claims = {
        "iat": now,
        "exp": now + 60,
        "aud": TRUST_DOMAIN,
        "txn": "forged",
        "sub": "user:alice",
        "scope": "orders.create",
        "req_wl": "spiffe://shop.example/ns/shop/sa/gateway",
        "tctx": {"order_id": "o-3333cccc"},
    }
    return scene.present("orders", "/orders/o-3333cccc", trace, encode_jws(claims, attacker, typ="txntoken+jwt"))


def _expired(scene: Scene, trace: str) -> Outcome:
    ten_minutes_ago = time.time() - 600
    minter = TxnTokenMinter(
        scene.tts_keys(), trust_domain=TRUST_DOMAIN, issuer=TTS_IDENTIFIER, clock=lambda: ten_minutes_ago
    )
    token = minter.mint(
        sub="user:alice",
        scope="orders.create",
        req_wl="spiffe://shop.example/ns/shop/sa/gateway",
        tctx={"order_id": "o-4444dddd"},
    )
    return scene.present("orders", "/orders/o-4444dddd", trace, token)


def _no_token_http(scene: Scene, trace: str) -> Outcome:
    return scene.present("payments", "/charges", trace, None, order_id="o-5555eeee", amount="2500.00")


def _no_token_grpc(scene: Scene, trace: str) -> Outcome:
    target = scene.mesh.url("inventory").removeprefix("http://")
    proof = scene.proof(grpc_audience(target, RESERVE), None)
    metadata = ((TRACE_HEADER, trace), (WIT_METADATA_KEY, proof[WIT_HEADER]), (WPT_METADATA_KEY, proof[WPT_HEADER]))
    with grpc.insecure_channel(target) as channel:
        reserve = channel.unary_unary(RESERVE, request_serializer=encode_message, response_deserializer=json.loads)
        try:
            reserve({"order_id": "o-6666ffff", "item": "widget", "quantity": 1}, metadata=metadata)
        except grpc.RpcError as exc:
            details = exc.details() if isinstance(exc, grpc.Call) else ""
            code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
            return Outcome((details or "error").split(":", 1)[0], code)
    return Outcome("ok", "OK")


def _escalation(scene: Scene, trace: str) -> Outcome:
    return scene.gateway(f"/api/orders/{scene.placed.get('order_id', 'o-0')}/refund", trace, {})


def _logged_token_without_key(scene: Scene, trace: str) -> Outcome:
    token = scene.captured_token("o-7777aaaa")  # read from a log, with the gateway's WIT (WITs are not secret)
    url = f"{scene.mesh.url('orders')}/orders/o-7777aaaa"
    attacker_key = SigningKey.generate("ES256")  # the attacker's own key: not the one in the WIT's cnf
    return scene.present("orders", "/orders/o-7777aaaa", trace, token, proof=scene.proof(url, token, key=attacker_key))


def _replayed_proof(scene: Scene, trace: str) -> Outcome:
    token = scene.captured_token("o-1111aaaa")
    path = "/orders/o-8888bbbb"  # the first sending is refused by the binding: its WPT is used up all the same
    proof = scene.proof(f"{scene.mesh.url('orders')}{path}", token)
    scene.present("orders", path, "", token, proof=proof)  # not traced: the step shows the second sending
    return scene.present("orders", path, trace, token, proof=proof)


def _proof_for_another_service(scene: Scene, trace: str) -> Outcome:
    token = scene.captured_token("o-9999cccc")
    proof = scene.proof(f"{scene.mesh.url('payments')}/charges", token)  # a WPT payments would accept
    return scene.present("orders", "/orders/o-9999cccc", trace, token, proof=proof)


def _caller_not_allowed(scene: Scene, trace: str) -> Outcome:
    token = scene.captured_token("o-aaaa1111")
    return scene.present("payments", "/charges", trace, token, order_id="o-aaaa1111", amount="12.50")


STEPS = (
    Step(
        "legitimate purchase", "ok", "alice buys 2 widgets: gateway → orders → inventory (gRPC) → payments", _purchase
    ),
    Step(
        "replayed token, another order",
        "binding_mismatch",
        "a genuine Txn-Token for order o-1111aaaa presented for order o-2222bbbb",
        _replay,
    ),
    Step("forged token", "signature_invalid", "signed with an attacker's key under the TTS's kid", _forged),
    Step("expired token", "token_expired", "signed by the TTS ten minutes ago", _expired),
    Step(
        "direct call to payments, no token", "token_missing", "a charge of 2500.00 straight to payments", _no_token_http
    ),
    Step(
        "direct gRPC call to inventory, no token",
        "token_missing",
        "a reservation straight to inventory",
        _no_token_grpc,
    ),
    Step(
        "logged Txn-Token, without the caller's key",
        "wpt_signature_invalid",
        "a genuine Txn-Token and the gateway's WIT, read from a log, sent with a proof signed by another key",
        _logged_token_without_key,
    ),
    Step(
        "replayed proof",
        "wpt_replayed",
        "the same request, WIT and WPT sent a second time",
        _replayed_proof,
    ),
    Step(
        "proof made for another service",
        "wpt_aud_invalid",
        "a valid WPT for payments presented to orders",
        _proof_for_another_service,
    ),
    Step(
        "genuine caller, not allowed on the route",
        "caller_not_allowed",
        "the gateway, authenticated, calls payments, which takes charges from inventory only",
        _caller_not_allowed,
    ),
    Step(
        "scope escalation at replacement",
        "invalid_scope",
        "orders asks the TTS to add payments.refund, which alice never granted",
        _escalation,
    ),
)


def _hops(scene: Scene, trace: str, wait: float = 3.0) -> list[dict[str, Any]]:
    """The hop reports of one trace, once they stop arriving (reports are sent as each hop ends)."""
    deadline, seen, stable = time.monotonic() + wait, -1, 0
    hops: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        transactions = scene.http.get(f"{scene.mesh.url('gateway')}/demo/transactions").json()
        hops = next((t["hops"] for t in transactions if t["trace"] == trace), [])
        stable = stable + 1 if len(hops) == seen and hops else 0
        if stable >= 3:
            break
        seen = len(hops)
        time.sleep(0.1)
    return hops


def run_scenario(mesh: MeshAddresses) -> list[StepResult]:
    """Run every step against the mesh; each result has the outcome and the hops the services reported."""
    scene = Scene(mesh)
    results = []
    try:
        scene.warm_up()
        for number, step in enumerate(STEPS, start=1):
            trace = f"{number}. {step.label}"
            outcome = step.run(scene, trace)
            results.append(StepResult(step, trace, outcome, _hops(scene, trace)))
    finally:
        scene.close()
    return results
