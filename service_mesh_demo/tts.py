"""The demo's Txn-Token Service: ``txtoken.service`` with ``tts.toml``, run from the demo data directory."""

from __future__ import annotations

import os
from pathlib import Path

from service_mesh_demo.common import DemoEnv, serve_http
from txtoken.keys import KeySet
from txtoken.service import TokenService, create_app, load_settings

CONFIG = Path(__file__).with_name("tts.toml")


def run() -> None:
    env = DemoEnv.load()
    os.chdir(env.data_dir)
    for key_file in (Path("tts", "keys.json"), Path("wit", "keys.json")):  # the Txn-Token keys, the WIT keys
        if not key_file.exists():  # what `txtoken keygen --out ...` does, once, before any replica starts
            KeySet.generate().save(key_file)
    settings = load_settings(CONFIG)
    serve_http(create_app(TokenService.build(settings), freeze_gc=True), env)
