# binance-streamer in a container: records into /data (a volume), as a non-root user.
#
#   docker build -t binance-streamer .
#   docker run -d --name recorder --init --stop-timeout 90 -v binance-data:/data \
#       -e BINANCE_STREAMER_STREAMS=ticker,aggTrade binance-streamer record BTCUSDT ETHUSDT
#   docker logs -f recorder;  docker stop recorder   # SIGTERM: writes everything, then exits
#   docker run --rm -v binance-data:/data binance-streamer status
#
# Settings: /data/binance-streamer.toml when present (`docker run --rm -v binance-data:/data
# binance-streamer init` writes one), BINANCE_STREAMER_<OPTION> variables (-e), then arguments.
# `docker stop` waits 10 s by default before SIGKILL: give --stop-timeout 90 (compose:
# stop_grace_period: 90s) so a stop can flush and fill its last gaps. --init reaps processes and
# forwards the signal.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ARG EXTRAS=postgres
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/*.whl)${EXTRAS:+[$EXTRAS]}" && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin streamer \
    && mkdir /data && chown streamer:streamer /data
USER streamer
WORKDIR /data
VOLUME ["/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["binance-streamer"]
CMD ["record"]
