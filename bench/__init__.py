"""``make bench``: eft version 3 over loopback, side by side with scp, sftp and rsync.

``python -m bench`` runs every part and writes ``bench/results/`` (JSON, Markdown, PNG);
``python -m bench --help`` lists the parts and options. Nothing here is a test: figures
are reported, never asserted.
"""
