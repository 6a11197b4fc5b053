"""The web console: server-rendered pages for operators and customers on the node's
HTTP listener (``/``), over the same data and access rules as the operator API
(docs/console.md).

``routes`` has the pages and forms, ``access`` who may see what (logins through the
API's own checks), ``sessions`` the in-memory sessions and CSRF tokens, ``data`` what
is read from the node, ``views`` what the templates show; ``templates/`` the Jinja2
pages, ``static/`` the stylesheet, the chart glue and the vendored htmx and uPlot.
"""

from smppbridge.node.console.routes import add_console

__all__ = ["add_console"]
