"""The demo service mesh: a platform, an IdP, the Txn-Token Service, a gateway and three services (HTTP and gRPC),
built from txtoken's public parts, with a scripted scenario and a live viewer; run locally (``txtoken demo``) or with
docker compose (``compose.yaml``), both from the one topology (``topology.py``). See docs/demo.md. It ships in the
wheel, its dependencies in the ``demo`` extra.
"""

import importlib.util

from txtoken.extras import requires_extra

# Found, not imported: compose's healthcheck imports this package every two seconds in every container, and importing
# grpc there starved the services of a two-core machine until they were marked unhealthy.
with requires_extra("demo", "the demo mesh (txtoken demo)"):
    for _module in ("grpc", "starlette", "uvicorn", "pydantic_settings"):
        if importlib.util.find_spec(_module) is None:
            raise ModuleNotFoundError(f"No module named {_module!r}", name=_module)
