# Builds every seatgate binary (API, workers, lb) into one small runtime image; compose picks
# the command per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && mkdir /out \
 && cp target/release/seatgate target/release/seatgate-workers target/release/seatgate-lb /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 seatgate
COPY --from=build /out/ /usr/local/bin/
USER seatgate
ENV SEATGATE_LISTEN=0.0.0.0:8080 SEATGATE_LOG_FORMAT=json
EXPOSE 8080
CMD ["seatgate", "serve"]
