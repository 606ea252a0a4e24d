"""Rekognition JSON 1.1 over HTTP.

- :mod:`pipeline.protocol.handler`: one request (X-Amz-Target + JSON body) to one response, against
  botocore's model; shared by the server and the command line's local mode.
- :mod:`pipeline.protocol.sigv4`: SigV4 verification (clock skew and replay limits).
- :mod:`pipeline.protocol.credentials`: the accepted access key ids and secrets.
- :mod:`pipeline.protocol.app`: the ASGI application (body cap, auth, thread pool, access log).
- :mod:`pipeline.protocol.server`: ``serve(ServerOptions)`` (uvicorn, TLS, shutdown); its command
  line and config file are parsed by :mod:`pipeline.cli.serve`.
"""
