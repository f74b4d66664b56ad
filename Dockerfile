# vitals worker image: pinned base, non-root, healthcheck on the metrics endpoint.
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VITALS_METRICS_HOST=0.0.0.0 VITALS_DATA_DIR=/var/lib/vitals
RUN useradd --system --uid 10001 --home-dir /var/lib/vitals --create-home vitals
WORKDIR /opt/vitals
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY streams ./streams
COPY sinks ./sinks
COPY schemas ./schemas
COPY deploy ./deploy
# the C extensions (streams/engine/c/, schemas/_decode.c) are compiled here; the compiler is removed again.
# python -P everywhere: WORKDIR holds the source tree, which must never shadow the installed package
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir '.[rocksdb]' \
 && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
 && python -P -c "import streams.engine._engine, schemas._decode" && chown -R vitals /var/lib/vitals
USER vitals
EXPOSE 9464 8090
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD python -P -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('VITALS_METRICS_PORT','9464'), timeout=4)"
ENTRYPOINT ["vitals"]
CMD ["worker"]
