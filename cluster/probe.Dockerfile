# The probe image of the kind environment (on a laptop with Docker): crossfed installed in a
# virtualenv at /opt/probe, so that `/opt/probe/bin/python -m crossfed.probe` runs, the command
# the pods are given (crossfed/workload/pod.py PROBE_PYTHON). CI builds the same layout without
# Docker: cluster/build-probe-image.sh.
#
# Built by the kind environment from the repository root (see .dockerignore):
#   docker build --file cluster/probe.Dockerfile --tag crossfed/probe:local .
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

# The probe's SDKs first, pinned as in pyproject.toml: this layer survives edits of the sources.
RUN python -m venv /opt/probe \
 && /opt/probe/bin/pip install boto3==1.44.8 awscli==1.46.3 azure-identity==1.27.0 \
      azure-keyvault-secrets==4.12.0

# The repository's package, without the harness's own dependencies (moto, kubernetes, pytest):
# the probe imports only crossfed.probe and the SDKs above.
COPY pyproject.toml README.md /src/
COPY crossfed /src/crossfed
RUN /opt/probe/bin/pip install --no-deps /src && rm -rf /src

# `aws` on PATH: the probe runs the CLI as well as boto3.
ENV PATH=/opt/probe/bin:$PATH
ENTRYPOINT ["/opt/probe/bin/python", "-m", "crossfed.probe"]
