"""The HAProxy peer as benches/load.py and benches/instructions.py both configure it, in one
place: the two measure the same peer."""


# Timeouts long enough for every scenario (idle connections are held for minutes), keep-alive
# on both sides.
DEFAULTS = """defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 30s
  timeout http-keep-alive 300s
  option http-keep-alive
"""


def jwt_verify(access):
    """A frontend's rules that accept only a request whose session cookie is an HS256 JWT
    signed with `access` (the gateway's access-token secret) and not expired: what the
    gateway's own check does for an access token, in HAProxy 2.6's words."""
    return f"""  http-request set-var(txn.jwt) req.cook(__Host-sg-access)
  http-request deny deny_status 401 unless {{ var(txn.jwt),jwt_header_query('$.alg') -m str HS256 }}
  http-request deny deny_status 401 unless {{ var(txn.jwt),jwt_verify("HS256","{access}") -m int 1 }}
  http-request set-var(txn.now) date()
  http-request set-var(txn.exp) var(txn.jwt),jwt_payload_query('$.exp','int')
  http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
"""


def backend(up):
    """The backend every frontend uses: the upstream on port `up`, connections reused."""
    return f"""backend be
  http-reuse always
  server app 127.0.0.1:{up} maxconn 1000
"""
