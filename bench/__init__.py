"""Benchmarks of imagereflector: scan, fleet side by side with Flux, idle, restart, store,
policy, scrape, hostile registry and soak.

Role: measure and write results (``python -m bench``, ``make bench``/``bench-quick``,
``make soak``); never assert on timings. Benchmarks are not part of the product: they
may import the test fakes (registry helpers, fronts, ports) and the test bed (the real
kube-apiserver and etcd, Flux's controller; ``testbed``); the product never imports this
package.

Invariants:
* Everything binds and connects on loopback only.
* Every loop is bounded by a count or a deadline.
* Every process a benchmark starts (registry, cluster, controllers) is stopped
  (terminate, then kill) before it returns, also on errors.
* Servers that are not under test (registry, fronts, etcd, kube-apiserver) run in their
  own processes, so their CPU does not count against the code measured.
* The fleet, idle, restart and soak runs use the real kube-apiserver, never the fake
  one (``tests/fakes/kubeapi``); the report says which server each figure comes from.
"""
