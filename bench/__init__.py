"""Benchmarks of imagereflector: scan, fleet, idle, store, policy and startup.

Role: measure and write results (``python -m bench``, ``make bench``/``bench-quick``);
never assert on timings. Benchmarks are not part of the product: they may import the
test fakes (fake Kubernetes API, registry helpers, fronts), the product never imports
this package.

Invariants:
* Everything binds and connects on loopback only.
* Every loop is bounded by a count or a deadline.
* Every process a benchmark starts is stopped (terminate, then kill) before it returns,
  also on errors.
* Servers that are not under test (registry, fronts, fake API server) run in their own
  processes, so their CPU does not count against the code measured.
"""
