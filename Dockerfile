# syntax=docker/dockerfile:1
# basicseg BIDS App image.
#
#   docker build -t bids/basicseg .                       # CUDA build of TensorFlow (default; --backend tensorflow)
#   docker build --build-arg TF_PACKAGE= --build-arg BACKEND=onnx -t bids/basicseg:cpu .   # CPU, no TensorFlow
#   docker build --build-arg TF_PACKAGE=tensorflow-cpu==2.21.0 -t bids/basicseg:cpu-tf .  # CPU, both backends
#   docker run --rm --read-only -v /data:/data:ro -v /out:/out bids/basicseg /data /out participant
#
# The image runs read-only, as any UID (HOME is /tmp, nothing is written outside the output dir,
# the work dir and temp), offline (the weights are inside the package), and under
# Singularity/Apptainer (docs/hpc.md).  BASE_IMAGE may be any Debian-like image with CPython 3.11
# and the venv module (python:3.11-slim, or the offline stand-in of ../shared/tools).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
# TF_PACKAGE may be empty: a CPU image without TensorFlow runs the shipped ONNX networks (ONNX Runtime, a
# dependency in pyproject.toml). BACKEND (below) is the image's default --backend: tensorflow in the CUDA image.
ARG TF_PACKAGE="tensorflow[and-cuda]==2.21.0"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Layer 1, cached across code changes: a venv with TensorFlow (if any) and the dependencies listed in
# pyproject.toml (read with tomllib, so the list lives in one place).  python3, not python: the
# stand-in base has no `python` alias.  The test suites bundled in the scientific wheels
# (~145 MB, never imported at run time) are dropped, and so are ONNX Runtime's model-conversion tools.
COPY pyproject.toml /tmp/src/pyproject.toml
# The venv has no pip of its own: the base image's pip installs into it (--python), so no installer
# stays in the image (a later layer could not remove it).
RUN BASE_PYTHON="$(command -v python3)" \
 && "$BASE_PYTHON" -m venv --without-pip /opt/venv \
 && "$BASE_PYTHON" -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && "$BASE_PYTHON" -m pip --python /opt/venv/bin/python3 install --no-cache-dir \
      ${TF_PACKAGE:+"${TF_PACKAGE}"} -r /tmp/requirements.txt \
 && rm -rf /tmp/src /tmp/requirements.txt /root/.cache \
 && for pkg in numpy scipy pandas matplotlib statsmodels nibabel; do \
      find /opt/venv/lib/python3*/site-packages/$pkg -depth -type d -name tests -exec rm -rf {} + \
        2>/dev/null || true; \
    done \
 && rm -rf /opt/venv/lib/python3*/site-packages/onnxruntime/transformers \
           /opt/venv/lib/python3*/site-packages/onnxruntime/quantization \
           /opt/venv/lib/python3*/site-packages/onnxruntime/tools

# Layer 2: the package itself (non-editable, with its weights as package data).
COPY . /tmp/src
RUN BASE_PYTHON="$(PATH=/usr/local/bin:/usr/bin command -v python3)" \
 && "$BASE_PYTHON" -m pip --python /opt/venv/bin/python3 install --no-cache-dir --no-deps /tmp/src \
 && "$BASE_PYTHON" -m pip --python /opt/venv/bin/python3 check \
 && cp /tmp/src/version /version \
 && rm -rf /tmp/src /root/.cache \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin basicseg \
 && basicseg --version

# Declared late: a RUN after an ARG misses the cache when the ARG's value changes.
ARG VERSION
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
ARG BACKEND=tensorflow

# Run time: any UID, read-only root.  HOME and every cache point into /tmp (a tmpfs under podman
# --read-only, Singularity and BABS; under `docker run --read-only` the app falls back to its work
# dir).  BASICSEG_CONTAINER goes into GeneratedBy.Container of dataset_description.json (pass
# --build-arg VERSION=$(cat version) so that it carries the tag).  Thread pools are bounded; the
# app sets TensorFlow's and ONNX Runtime's own pools from --nprocs.
ENV HOME=/tmp \
    MPLCONFIGDIR=/tmp/mpl \
    XDG_CACHE_HOME=/tmp/.cache \
    KERAS_HOME=/tmp/.keras \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    NUMEXPR_NUM_THREADS=1 \
    VECLIB_MAXIMUM_THREADS=1 \
    BASICSEG_BACKEND="${BACKEND}" \
    BASICSEG_CONTAINER="bids/basicseg${VERSION:+:${VERSION}}"

LABEL org.opencontainers.image.title="basicseg" \
      org.opencontainers.image.description="BIDS App: spinal cord and contusion-lesion segmentation on axial T2w MRI (BASICseg U-Nets, McCoy et al. AJNR 2019)" \
      org.opencontainers.image.source="https://github.com/bids-apps/basicseg" \
      org.opencontainers.image.url="https://hub.docker.com/r/bids/basicseg" \
      org.opencontainers.image.documentation="https://github.com/bids-apps/basicseg#readme" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="BIDS Apps" \
      org.opencontainers.image.version="${VERSION:-unknown}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

USER basicseg
WORKDIR /tmp
ENTRYPOINT ["/opt/venv/bin/basicseg"]
