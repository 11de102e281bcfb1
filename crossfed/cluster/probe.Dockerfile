# The probe image of the kind environment (on a laptop with Docker): the probe's SDKs in a
# virtualenv at /opt/probe and the probe's sources in /opt/probe/app, so that
# `/opt/probe/bin/python -m crossfed.probe` runs, the command the pods are given
# (crossfed/workload/pod.py PROBE_PYTHON). CI builds the same layout without Docker:
# cluster/build-probe-image.sh.
#
# Shipped in the package. The kind environment builds it with a context that holds only the
# probe's sources, taken from the installed package (crossfed/environments/kind.py
# probe_context): crossfed/__init__.py (empty) and crossfed/probe/*.py.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

# The probe's SDKs first, pinned as in pyproject.toml: this layer survives edits of the sources.
RUN python -m venv /opt/probe \
 && /opt/probe/bin/pip install boto3==1.44.8 awscli==1.46.3 azure-identity==1.27.0 \
      azure-keyvault-secrets==4.12.0

# The probe imports only crossfed.probe and the SDKs above, not the harness (moto, kubernetes).
COPY crossfed /opt/probe/app/crossfed
WORKDIR /opt/probe/app

# `aws` on PATH: the probe runs the CLI as well as boto3.
ENV PATH=/opt/probe/bin:$PATH
ENTRYPOINT ["/opt/probe/bin/python", "-m", "crossfed.probe"]
