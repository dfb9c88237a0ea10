"""One leader-election candidate as a process, for the two-process test in test_leader.py.

Usage: ``python -m tests.kube.leader_child KUBECONFIG IDENTITY NAMESPACE LEASE`` (from the
repository root). Runs a :class:`LeaderElector` on the real loop clock with short timings
(lease 2 s, renew deadline 1.5 s, retry 0.2 s) against the Lease ``NAMESPACE/LEASE``.
Prints ``leading`` and ``not-leading`` lines as :attr:`is_leader` changes (flushed, so
the parent can read them). SIGTERM sets the stop event, which releases the Lease; exit
code 0 after a stop, 3 after a loss, as a manager would exit non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from imagereflector.kube.client import KubeClient
from imagereflector.kube.leader import LeaderElector, LeadershipLostError


def _say(leading: bool) -> None:
    print("leading" if leading else "not-leading", flush=True)


async def _main(kubeconfig: str, identity: str, namespace: str, lease: str) -> int:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    client = await KubeClient.connect(kubeconfig=kubeconfig, request_timeout=5.0)
    try:
        elector = LeaderElector(
            client,
            namespace=namespace,
            name=lease,
            identity=identity,
            lease_duration=2.0,
            renew_deadline=1.5,
            retry_period=0.2,
            on_change=_say,
        )
        try:
            await elector.run(stop)
        except LeadershipLostError:
            return 3
        return 0
    finally:
        await client.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    sys.exit(asyncio.run(_main(*sys.argv[1:5])))
