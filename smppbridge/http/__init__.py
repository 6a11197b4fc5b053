"""The HTTP pieces below the node: the plain request and response types the node's own
code reads (request.py), and an ASGI application served by uvicorn in the running loop
(serve.py)."""
