# The project image: every KFP component and Argo template runs in it (CPU; GPU stages add TensorRT
# on top in components/build_engine/Dockerfile when that stage lands).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/tlt

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY pyproject.toml README.md ./
COPY lib ./lib
COPY components ./components
COPY pipelines ./pipelines
COPY examples ./examples
RUN pip install --no-deps -e .

ENV TLT_REPO_ROOT=/opt/tlt
ENTRYPOINT []
