"""The lean kubernetes_asyncio import: generated classes load only when asked for.

Run in fresh interpreters, since this test process has long imported the full package.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import imagereflector.kube.client as kc
loaded = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models.")]
print(len(loaded), "kubernetes_asyncio.client.api.core_v1_api" in sys.modules)
from kubernetes_asyncio.client import CoreV1Api
import kubernetes_asyncio.client.models as models
print(CoreV1Api.__name__, models.V1Pod.__name__)
"""


def test_generated_classes_load_only_on_demand() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == "0 False"
    assert out[1] == "CoreV1Api V1Pod"


def test_install_is_a_no_op_when_the_package_is_already_imported() -> None:
    probe = ("import kubernetes_asyncio, sys\n"
             "from imagereflector.kube import _lean\n"
             "_lean.install()\n"
             "print(type(sys.modules['kubernetes_asyncio']).__name__)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "module"
