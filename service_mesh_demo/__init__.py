"""The demo service mesh: a platform, an IdP, the Txn-Token Service, a gateway and three services (HTTP and gRPC),
built from txtoken's public parts, with a scripted scenario and a live viewer; run locally (``txtoken demo``) or with
docker compose (``compose.yaml``), both from the one topology (``topology.py``). See docs/demo.md. It ships in the
wheel, its dependencies in the ``demo`` extra.
"""

import importlib

from txtoken.extras import requires_extra

with requires_extra("demo", "the demo mesh (txtoken demo)"):
    for _module in ("grpc", "starlette", "uvicorn", "pydantic_settings"):
        importlib.import_module(_module)
