"""The test bed: real Kubernetes and Flux programs, built from Go modules, for tests.

Role: everything the tests, benchmarks and ``make run`` need to run the real control
plane on loopback, and nothing the product needs. ``build`` compiles kube-apiserver,
kubectl, etcd and Flux's programs from the pins in ``tools/*/go.mod`` into a per-user
cache; ``cluster`` starts etcd and kube-apiserver from those binaries; ``pytest_plugin``
exposes both to pytest as fixtures.

Invariants:

- The product package ``imagereflector`` never imports ``testbed`` (a test in
  ``tests/testbed`` checks it); ``testbed`` is not installed with the product.
- Every process the test bed starts listens on 127.0.0.1 only and is recorded by PID in
  its state directory, so it can be stopped by PID and by nothing broader.
"""
