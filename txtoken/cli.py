"""The ``txtoken`` command: keygen, keys rotate, mint, verify, serve, forward-auth, wimse, and the demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from txtoken import __version__
from txtoken.errors import ConfigurationError, TxTokenError
from txtoken.extras import MissingExtra, requires_extra
from txtoken.keys import ALGORITHMS, KeySet
from txtoken.keysource import JwksFileKeySource, KeySource, RemoteJwksKeySource
from txtoken.logs import LOG_FORMATS, LOG_LEVELS, log_config
from txtoken.mint import TxnTokenMinter
from txtoken.verify import DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, TxnTokenVerifier
from txtoken.wimse.cli import add_wimse_parser

__all__ = ["main"]

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
Command = Callable[[argparse.Namespace], int]


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigurationError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{what} must be a JSON object")
    return value


def _write(path: str, text: str, *, private: bool) -> None:
    if path == "-":
        sys.stdout.write(text + "\n")
        return
    target = Path(path)
    target.write_text(text + "\n", encoding="utf-8")
    if private:
        target.chmod(0o600)


def _keygen(args: argparse.Namespace) -> int:
    keys = KeySet.generate(args.alg)
    if args.out == "-":
        _write("-", json.dumps(keys.to_private_jwks(), indent=2), private=True)
    else:
        keys.save(args.out)
    if args.public_out:
        _write(args.public_out, json.dumps(keys.public_jwks(), indent=2), private=False)
    print(f"kid {keys.active.kid} ({keys.active.alg})", file=sys.stderr)
    return 0


def _mint(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = (
        _json_object(Path(args.claims).read_text(encoding="utf-8"), args.claims) if args.claims else {}
    )
    for name in ("sub", "scope", "req_wl", "txn"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    for name in ("tctx", "rctx"):
        if getattr(args, name) is not None:
            fields[name] = _json_object(getattr(args, name), f"--{name}")
    known = {"sub", "scope", "req_wl", "txn", "tctx", "rctx"}
    missing = [name for name in ("sub", "scope", "req_wl") if name not in fields]
    if missing:
        raise ConfigurationError(f"missing claims: {', '.join(missing)} (flags or --claims file)")
    if args.lifetime > DEFAULT_MAX_LIFETIME:
        print(
            f"txtoken mint: warning: a lifetime over {DEFAULT_MAX_LIFETIME} s is refused (lifetime_too_long) by "
            "verifiers with the default max_lifetime",
            file=sys.stderr,
        )
    minter = TxnTokenMinter(
        KeySet.load(args.keys).at(),  # the key that signs now, by the file's times
        trust_domain=args.trust_domain,
        issuer=args.issuer,
        lifetime=args.lifetime,
        max_lifetime=max(args.lifetime, DEFAULT_MAX_LIFETIME),
    )
    extra = {k: v for k, v in fields.items() if k not in known | {"iat", "exp", "aud", "iss"}}
    print(minter.mint(**{k: v for k, v in fields.items() if k in known}, extra=extra))
    return 0


def _key_source(where: str) -> KeySource:
    if where.startswith(("https://", "http://")):
        url = httpx.URL(where)
        # One process, one lookup: the keys fetched now stay usable; a failure names the URL and its cause.
        remote = RemoteJwksKeySource(where, allow_http=url.host in _LOOPBACK_HOSTS)
        remote.prefetch()
        return remote
    return JwksFileKeySource(where)


def _verify(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("txtoken").addHandler(logging.NullHandler())  # the one error line already names the cause
    token = sys.stdin.read().strip() if args.token == "-" else args.token
    verifier = TxnTokenVerifier(
        _key_source(args.jwks),
        trust_domain=args.trust_domain,
        leeway=args.leeway,
        max_lifetime=args.max_lifetime,
        legacy_claims=args.legacy_claims,
        cache_size=0,
    )
    verified = verifier.verify(token)
    print(json.dumps(verified.claims.to_dict(), indent=2, sort_keys=True))
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The service mesh demo (``service_mesh_demo``, in the wheel; its dependencies are the ``demo`` extra)."""
    from service_mesh_demo.runner import main as run_demo

    return run_demo(args.demo_args)


def _exit_cleanly(signum: int, frame: object) -> None:
    """After uvicorn's graceful shutdown it re-raises the signal; a SIGTERM then ends the process with status 0."""
    raise SystemExit(0)


def _tls_options(args: argparse.Namespace) -> dict[str, Any]:
    if (
        args.ssl_keyfile
        and not args.ssl_certfile
        or (args.ssl_ca_certs or args.ssl_cert_reqs)
        and not args.ssl_certfile
    ):
        raise ConfigurationError("TLS needs --ssl-certfile (with --ssl-keyfile unless the key is in that file)")
    if args.ssl_cert_reqs in ("optional", "required") and not args.ssl_ca_certs:
        raise ConfigurationError("--ssl-cert-reqs needs --ssl-ca-certs: the CAs that client certificates chain to")
    if not args.ssl_certfile:
        return {}
    import ssl

    requirement = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    return {
        "ssl_certfile": args.ssl_certfile,
        "ssl_keyfile": args.ssl_keyfile,
        "ssl_ca_certs": args.ssl_ca_certs,
        "ssl_cert_reqs": requirement[args.ssl_cert_reqs or "none"],
    }


def _serve(args: argparse.Namespace) -> int:
    import logging
    import logging.config
    import os
    import signal

    with requires_extra("server", "the Txn-Token Service"):
        import uvicorn

    from txtoken.service import TokenService, create_app, load_settings
    from txtoken.service.defaults import describe, embedded_settings
    from txtoken.service.nodelay import HTTP_PROTOCOL
    from txtoken.service.serving import APP_FACTORY, CONFIG_ENV

    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    if args.metrics and args.workers > 1:
        raise ConfigurationError("--metrics needs --workers 1: each scrape would reach one worker's counts")
    tls = _tls_options(args)
    logging_config = log_config(args.log_level, args.log_format)
    logging.config.dictConfig(logging_config)
    if args.metrics:
        os.environ["TXTOKEN_METRICS__ENABLED"] = "true"
    if args.config:
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())  # for the worker processes' app factory
    settings = load_settings(args.config) if args.config else embedded_settings()
    service = TokenService.build(settings)  # in development mode, creates the shared keys once, before any worker
    active = service.keystore.current().active
    log = logging.getLogger("txtoken.service")
    if args.config:
        log.info(
            "txtoken serve: %s mode, config %s, trust domain %s, identifier %s, signing key %s (%s) in %s, "
            "%d workload(s), %d issuer(s), %d worker(s)",
            settings.mode,
            args.config,
            ", ".join(settings.trust_domains),
            settings.identifier,
            active.kid,
            active.alg,
            service.keystore.path,
            len(settings.workloads),
            len(settings.issuers),
            args.workers,
        )
    else:
        log.info("%s", describe(settings, active.kid, active.alg))
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # proxy_headers off: the peer address must be the socket's, or a forwarded-certificate check could be spoofed.
    uvicorn.run(
        create_app(service, freeze_gc=True) if args.workers == 1 else APP_FACTORY,
        factory=args.workers > 1,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,
        access_log=False,
        log_config=logging_config,
        log_level=args.log_level,
        **tls,
        http=HTTP_PROTOCOL if args.workers > 1 else "auto",  # see txtoken/service/nodelay.py
    )
    return 0


def _forward_auth(args: argparse.Namespace) -> int:
    import logging
    import logging.config
    import signal

    import uvicorn

    from txtoken.forwardauth import ForwardAuth, load_config

    config = load_config(args.config)
    app = ForwardAuth.from_config(config)
    logging_config = log_config(args.log_level, args.log_format)
    logging.config.dictConfig(logging_config)
    logging.getLogger("txtoken.forwardauth").info(
        "txtoken forward-auth: %s mode, config %s, trust domain %s", config.mode, args.config, config.trust_domain
    )
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # proxy_headers off: the client address is taken from X-Forwarded-For only behind the configured trusted proxies.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        proxy_headers=False,
        access_log=False,
        log_config=logging_config,
        log_level=args.log_level,
    )
    return 0


def _when(at: int, now: int) -> str:
    stamp = datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} ({'now' if at <= now else f'+{at - now} s'})"


def _timeline(keys: KeySet, now: int) -> list[str]:
    """What happens when, from the key set's timestamps: the rotation plan ``keys rotate`` prints."""
    events: list[tuple[int, str]] = []
    if keys.pending is None:
        events.append((now, f"{keys.active.kid} signs"))
    else:
        events.append((now, f"{keys.pending.key.kid} published, not signing yet; {keys.active.kid} signs"))
        events.append((keys.pending.activate_at, f"{keys.pending.key.kid} signs; {keys.active.kid} still published"))
        events.append((keys.pending.retire_previous_at, f"{keys.active.kid} no longer published"))
    events.extend((p.retire_at, f"{p.key.kid} no longer published") for p in keys.previous if p.retire_at is not None)
    return [f"  {_when(at, now)}: {what}" for at, what in sorted(events, key=lambda event: event[0])]


def _keys_rotate(args: argparse.Namespace) -> int:
    from txtoken.service import load_settings, rotate_keys
    from txtoken.service.defaults import data_dir
    from txtoken.service.keystore import KEY_FILE

    settings = load_settings(args.config) if args.config else None
    directory = Path(args.dir) if args.dir else settings.key_dir if settings else data_dir()
    overlap = args.overlap if args.overlap is not None else settings.keys.rotation_overlap if settings else 1800
    prepublish = (
        args.prepublish if args.prepublish is not None else settings.keys.rotation_prepublish if settings else 600
    )
    now = int(time.time())
    keys = rotate_keys(directory, overlap=overlap, prepublish=prepublish, algorithm=args.alg, now=now, out=args.out)
    written = Path(args.out if args.out is not None else directory) / KEY_FILE
    new = keys.pending.key if keys.pending is not None else keys.active
    lines = [f"new key {new.kid} ({new.alg}) in {written}; timeline:", *_timeline(keys, now)]
    others = sorted({key.kid for key in keys.verification_keys(now)} - {keys.active.kid})
    lines.append(f"active key {keys.active.kid} ({keys.active.alg}); still published: {', '.join(others) or 'none'}")
    print("\n".join(lines), file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="txtoken", description="OAuth Transaction Tokens: keys, minting, checks.")
    parser.add_argument("--version", action="version", version=f"txtoken {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    keygen = sub.add_parser("keygen", help="generate a signing key set (a private JWKS file)")
    keygen.add_argument("--alg", choices=ALGORITHMS, default="ES256")
    keygen.add_argument("--out", default="-", help="key set file (default: standard output)")
    keygen.add_argument("--public-out", help="also write the public JWKS here")
    keygen.set_defaults(run=_keygen)

    mint = sub.add_parser("mint", help="sign a Txn-Token (development and tests)")
    mint.add_argument("--keys", required=True, help="key set file, JWK or PEM private key")
    mint.add_argument("--trust-domain", required=True)
    mint.add_argument("--claims", help="JSON file with sub, scope, req_wl, tctx, rctx, txn and extra claims")
    mint.add_argument("--sub")
    mint.add_argument("--scope")
    mint.add_argument("--req-wl", dest="req_wl")
    mint.add_argument("--txn")
    mint.add_argument("--tctx", help="JSON object")
    mint.add_argument("--rctx", help="JSON object")
    mint.add_argument("--issuer")
    mint.add_argument("--lifetime", type=int, default=DEFAULT_MAX_LIFETIME, help="seconds")
    mint.set_defaults(run=_mint)

    verify = sub.add_parser("verify", help="verify a Txn-Token and print its claims")
    verify.add_argument("token", help="the token, or - to read it from standard input")
    verify.add_argument("--jwks", required=True, help="JWKS file or URL")
    verify.add_argument("--trust-domain", required=True)
    verify.add_argument("--leeway", type=int, default=DEFAULT_LEEWAY)
    verify.add_argument("--max-lifetime", type=int, default=DEFAULT_MAX_LIFETIME)
    verify.add_argument("--legacy-claims", action="store_true", help="accept claim names of older drafts")
    verify.set_defaults(run=_verify)

    serve = sub.add_parser("serve", help="run the Txn-Token Service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8400)
    serve.add_argument("--config", help="TOML configuration file (default: the embedded development default)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes sharing the keys (default 1)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    serve.add_argument("--log-format", choices=LOG_FORMATS, default="text", help="text, or one JSON object a line")
    serve.add_argument("--metrics", action="store_true", help="serve Prometheus text at /metrics")
    serve.add_argument("--ssl-certfile", help="serve https with this certificate (PEM, chain after the leaf)")
    serve.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    serve.add_argument("--ssl-ca-certs", help="CA certificates (PEM) that client certificates must chain to")
    serve.add_argument(
        "--ssl-cert-reqs", choices=("none", "optional", "required"), help="ask clients for a certificate"
    )
    serve.set_defaults(run=_serve)

    keys = sub.add_parser("keys", help="manage the Txn-Token Service's signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate", help="add a new key: published first, signing after --prepublish; the old one published for --overlap"
    )
    rotate.add_argument("--config", help="the service's TOML configuration (for the key directory and times)")
    rotate.add_argument("--dir", help="the key directory (default: from --config, else $TXTOKEN_DATA_DIR or .txtoken)")
    rotate.add_argument(
        "--out", help="write the rotated set to OUT/keys.json (a new directory), not in place: for read-only mounts"
    )
    rotate.add_argument(
        "--prepublish",
        type=int,
        help="seconds the new key is published before it signs (default 600): longer than verifiers' JWKS cache time",
    )
    rotate.add_argument("--overlap", type=int, help="seconds the old key stays published after that (default 1800)")
    rotate.add_argument("--alg", choices=ALGORITHMS, help="algorithm of the new key (default: the current one's)")
    rotate.set_defaults(run=_keys_rotate)

    forward = sub.add_parser(
        "forward-auth", help="answer forward-auth checks of nginx auth_request, Envoy ext_authz, Traefik ForwardAuth"
    )
    forward.add_argument("--config", required=True, help="TOML configuration (mode edge or hop; docs/gateway.md)")
    forward.add_argument("--host", default="127.0.0.1")
    forward.add_argument("--port", type=int, default=8410)
    forward.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    forward.add_argument("--log-format", choices=LOG_FORMATS, default="text", help="text, or one JSON object a line")
    forward.set_defaults(run=_forward_auth)

    add_wimse_parser(sub)

    demo = sub.add_parser("demo", help="run the demo service mesh (txtoken demo --help)", add_help=False)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``txtoken`` command; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "demo":
        args.demo_args = extra  # the demo runner parses its own options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    run: Command = args.run
    try:
        return run(args)
    except (TxTokenError, MissingExtra) as exc:
        print(f"txtoken {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        paths = ", ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        reason = exc.strerror or type(exc).__name__
        print(f"txtoken {args.command}: io_error: {f'{paths}: ' if paths else ''}{reason}", file=sys.stderr)
        return 1
