"""gunicorn settings for a snowg application (``gunicorn -c gunicorn.conf.py chat:app``).

Each worker is a snowg node (``snowg.gunicorn.Worker``): it starts after the
fork, takes a unique name ``chat-XXXXXX@$SNOWG_HOST``, joins the other workers
on this host and whatever ``$SNOWG_CLUSTER`` names, and leaves the cluster on a
graceful shutdown. Settings read from the environment so that one file serves
a laptop, a systemd unit and a container.
"""

import os

worker_class = "snowg.gunicorn.Worker"
# One worker per core is the usual start for gevent workers (each is one OS process).
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))
# Only this host by default; a container or a host behind no proxy sets BIND=0.0.0.0:8000.
bind = os.environ.get("BIND", "127.0.0.1:8000")
# The nodes' name prefix: workers of one application share it, and discovery
# joins only nodes with the same prefix ($SNOWG_PREFIX, when set, wins).
proc_name = "chat"
# A worker asked to stop (SIGTERM, a HUP reload, a scale-down) has this long to
# finish its requests and flush what its sessions hold before it is killed.
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
loglevel = "info"
