"""Helpers of the stress harness (``benchmarks/stress.py``): hostile requests, faults, servers.

``hostile``  good and hostile requests per protocol, sent over raw HTTP or bytes-level gRPC
``tamper``   the cache tampering kinds, applied to a stopped server's cache directory
``servers``  TorchServe, KServe and TF Serving started as the integration tests start them
``report``   the machine line, the results table and the README section
``site/``    ``sitecustomize.py``: raises or hangs compiled calls inside a server on a trigger
"""
