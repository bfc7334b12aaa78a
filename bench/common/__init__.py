"""What every benchmark shares: the suite's one copy of each helper.

- :mod:`common.ports`: a free loopback port.
- :mod:`common.servers`: started processes (stopped by pid), a private redis-server, sessionhub,
  the stock python-socketio and Node socket.io reference servers, the generator's calibration
  server, and tokens for them.
- :mod:`common.wire`: the bytes of WebSocket / Engine.IO v4 / Socket.IO v5 a raw client sends.
- :mod:`common.wire_client`: the one raw Socket.IO client of the Python benchmarks (aiohttp).
- :mod:`common.figures`: percentiles and the printing of a result.
- :mod:`common.probe`: the `/healthz` probe thread of the soaks (is the node still answering?).

Scripts run as ``python bench/<script>.py``, so ``bench/`` is on ``sys.path`` and this package
imports as ``common``.
"""
