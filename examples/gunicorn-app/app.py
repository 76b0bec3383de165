"""A tiny WSGI app for rainbowd: answers 200 with the pid of the worker that served it."""
import os


def app(environ, start_response):
    body = "hello from gunicorn worker pid {}, generation {}\n".format(
        os.getpid(), os.environ.get("RAINBOWD_GENERATION", "?")
    ).encode()
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
    ])
    return [body]
