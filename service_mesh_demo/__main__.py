"""``python -m service_mesh_demo NAME``: start one service of the mesh (the same command locally and in compose);
``python -m service_mesh_demo scenario``: run the scenario against the compose mesh, from a container on its network.

A workload whose credential is delivered in the environment gets it here, as a platform's secret injection would
set it before the process starts: ``DEMO_CREDENTIAL`` from the file the platform wrote.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from service_mesh_demo.topology import BY_NAME


def main(argv: list[str]) -> int:
    if argv == ["scenario"]:
        return scenario()
    if len(argv) != 1 or argv[0] not in BY_NAME:
        print(f"usage: python -m service_mesh_demo {{{','.join(BY_NAME)},scenario}}", file=sys.stderr)
        return 2
    service = BY_NAME[argv[0]]
    if service.credential == "env":
        credential = Path(os.environ["DEMO_DATA_DIR"], "env", service.name, "credential")
        os.environ["DEMO_CREDENTIAL"] = credential.read_text(encoding="utf-8").strip()
    module = importlib.import_module(service.module)
    module.run()
    return 0


def scenario() -> int:
    """Run the scenario from a container on the compose network; exit 0 only if every step went as expected."""
    from service_mesh_demo.mesh import ComposeNetwork
    from service_mesh_demo.runner import report
    from service_mesh_demo.scenario import run_scenario

    return 0 if report(run_scenario(ComposeNetwork())) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
