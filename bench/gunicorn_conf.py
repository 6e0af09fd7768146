"""gunicorn settings for bench/callbacks_http.py, passed with --config so that a
gunicorn.conf.py in the working directory cannot change what is measured. Workers, threads,
worker class and bind are given on the command line; no access log unless asked for."""

accesslog = None
errorlog = "-"
loglevel = "warning"
