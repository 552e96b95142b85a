"""The demo service mesh (``txtoken demo``; ships in the wheel, its dependencies in the ``demo`` extra)."""

import importlib

from txtoken.extras import requires_extra

with requires_extra("demo", "the demo mesh (txtoken demo)"):
    for _module in ("grpc", "starlette", "uvicorn", "pydantic_settings"):
        importlib.import_module(_module)
