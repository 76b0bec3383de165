"""Benchmark fixture: a hello-world WSGI app for gunicorn (sync workers close every connection)."""

BODY = b"hello world\n"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
