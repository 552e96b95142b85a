"""``txtoken wimse``: verify a WIT + WPT pair (black-box checks, debugging) and mint them (tests, development)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from txtoken.errors import ConfigurationError, TxTokenError
from txtoken.keys import ALGORITHMS, KeySet, load_jwks
from txtoken.replay import MemoryReplayStore
from txtoken.wimse.caller import CallerVerifier
from txtoken.wimse.wit import DEFAULT_WIT_LEEWAY, DEFAULT_WIT_LIFETIME, WitIssuer, WitVerifier
from txtoken.wimse.wpt import (
    DEFAULT_WPT_LEEWAY,
    DEFAULT_WPT_LIFETIME,
    DEFAULT_WPT_MAX_LIFETIME,
    WptVerifier,
    create_wpt,
)

__all__ = ["add_wimse_parser"]


def _token(path: str) -> str:
    """The one token a file holds; a trailing newline is allowed, nothing else is stripped."""
    return Path(path).read_text(encoding="ascii").removesuffix("\n").removesuffix("\r")


def _optional_token(path: str | None) -> str | None:
    return None if path is None else _token(path)


def _verify(args: argparse.Namespace) -> int:
    anchors = load_jwks(Path(args.trust_anchors).read_bytes())
    if not anchors:
        raise ConfigurationError("the trust anchors file holds no usable signature key")
    clock: Callable[[], float] = time.time if args.now is None else (lambda: float(args.now))
    verifier = CallerVerifier(
        WitVerifier(anchors, trust_domain=args.trust_domain, leeway=args.wit_leeway, cache_size=0, clock=clock),
        WptVerifier(
            replay_store=MemoryReplayStore(clock=clock),
            max_lifetime=args.wpt_max_lifetime,
            leeway=args.wpt_leeway,
            clock=clock,
        ),
    )
    caller = verifier.verify(
        wit=_token(args.wit),
        wpt=_token(args.wpt),
        audience=args.audience,
        txn_token=_optional_token(args.txn_token),
        access_token=_optional_token(args.access_token),
    )
    result = {"workload": caller.workload, "wit": dict(caller.wit.claims), "wpt": dict(caller.wpt.claims)}
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _issue(args: argparse.Namespace) -> int:
    issuer = WitIssuer(
        KeySet.load(args.keys), trust_domain=args.trust_domain, issuer=args.issuer, lifetime=args.lifetime
    )
    if args.workload_key:
        public = KeySet.load(args.workload_key).active.verification_key
        print(issuer.issue(args.workload, public))
        return 0
    if not args.key_out:
        raise ConfigurationError("give --workload-key (an existing key) or --key-out (where to write a new one)")
    wit, key = issuer.issue_with_new_key(args.workload, args.alg)
    KeySet(key).save(args.key_out)
    print(wit)
    return 0


def _wpt(args: argparse.Namespace) -> int:
    print(
        create_wpt(
            KeySet.load(args.key).active,
            wit=_token(args.wit),
            audience=args.audience,
            txn_token=_optional_token(args.txn_token),
            access_token=_optional_token(args.access_token),
            lifetime=args.lifetime,
        )
    )
    return 0


def _run(command: str, run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Errors as one line ``txtoken wimse <command>: <code>: <message>`` on stderr; never a token or a traceback."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except TxTokenError as exc:
            print(f"txtoken wimse {command}: {exc}", file=sys.stderr)
        except OSError as exc:
            print(f"txtoken wimse {command}: io_error: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        except UnicodeDecodeError:
            print(f"txtoken wimse {command}: token_malformed: a token file is not ASCII", file=sys.stderr)
        return 1

    return guarded


def add_wimse_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``txtoken wimse verify|issue|wpt`` to the ``txtoken`` command."""
    wimse = sub.add_parser("wimse", help="WIMSE workload identity: verify and mint WITs and WPTs")
    commands = wimse.add_subparsers(dest="wimse_command", required=True)

    verify = commands.add_parser("verify", help="verify a WIT and its WPT (then print the caller and both claim sets)")
    verify.add_argument("--trust-domain", required=True)
    verify.add_argument("--trust-anchors", required=True, help="JWKS file of the trust domain's WIT keys")
    verify.add_argument(
        "--audience", required=True, action="append", help="this receiver's target URI (repeat for aliases)"
    )
    verify.add_argument("--wit", required=True, help="file holding the WIT")
    verify.add_argument("--wpt", required=True, help="file holding the WPT")
    verify.add_argument("--txn-token", help="file holding the Txn-Token sent with it (checked against tth)")
    verify.add_argument("--access-token", help="file holding the access token sent with it (checked against ath)")
    verify.add_argument("--now", type=int, help="pin the clock to these Unix seconds")
    verify.add_argument("--wit-leeway", type=int, default=DEFAULT_WIT_LEEWAY, help="seconds")
    verify.add_argument("--wpt-leeway", type=int, default=DEFAULT_WPT_LEEWAY, help="seconds")
    verify.add_argument("--wpt-max-lifetime", type=int, default=DEFAULT_WPT_MAX_LIFETIME, help="seconds")
    verify.set_defaults(run=_run("verify", _verify))

    issue = commands.add_parser("issue", help="sign a WIT for a workload (development and tests)")
    issue.add_argument("--keys", required=True, help="the trust domain's WIT key set (txtoken keygen)")
    issue.add_argument("--trust-domain", required=True)
    issue.add_argument("--workload", required=True, help="the Workload Identifier (sub)")
    issue.add_argument("--workload-key", help="the workload's existing key file (its public half goes into cnf)")
    issue.add_argument("--key-out", help="generate the workload's key and write it (private JWKS) here")
    issue.add_argument("--alg", choices=ALGORITHMS, default="ES256", help="algorithm of a generated workload key")
    issue.add_argument("--issuer", help="the iss claim")
    issue.add_argument("--lifetime", type=int, default=DEFAULT_WIT_LIFETIME, help="seconds")
    issue.set_defaults(run=_run("issue", _issue))

    wpt = commands.add_parser("wpt", help="sign a WPT for one request (development and tests)")
    wpt.add_argument("--key", required=True, help="the workload's key file")
    wpt.add_argument("--wit", required=True, help="file holding the workload's WIT")
    wpt.add_argument("--audience", required=True, help="the target URI")
    wpt.add_argument("--txn-token", help="file holding the Txn-Token to bind (tth)")
    wpt.add_argument("--access-token", help="file holding the access token to bind (ath)")
    wpt.add_argument("--lifetime", type=int, default=DEFAULT_WPT_LIFETIME, help="seconds")
    wpt.set_defaults(run=_run("wpt", _wpt))
