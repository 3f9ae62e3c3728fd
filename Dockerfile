# n2n: the denoising service on an NVIDIA GPU (falls back to the CPU when none is visible).
# torch comes from this image and is not reinstalled (`--no-deps` below): its version is the project's
# pin (pyproject.toml torch==...), which tests/test_docker.py checks.
FROM pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    N2N_DATA_DIR=/data \
    N2N_WEIGHTS_DIR=/app/weights

WORKDIR /app

# Dependencies first, in their own cached layer: code changes do not reinstall them.
COPY requirements-docker.txt .
RUN pip install --no-cache-dir -r requirements-docker.txt

COPY pyproject.toml README.md ./
COPY n2n_core ./n2n_core
COPY app ./app
COPY weights ./weights
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin n2n \
    && mkdir -p /data /results \
    && chown n2n:n2n /data /results

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

CMD ["n2n", "serve", "--host", "0.0.0.0", "--port", "8000"]
