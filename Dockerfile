# orgate container image: a static-ish release binary on a distroless base, running as non-root.
#
# Build:  docker build -t orgate .
# Run:    docker run --rm -p 8080:8080 \
#           -v "$PWD/config:/etc/orgate:ro" \
#           -v "$PWD/secrets/openrouter_api_key.txt:/run/secrets/openrouter_api_key:ro" \
#           orgate
#   The config is read from /etc/orgate/orgate.toml (mount your config/ there); it must define
#   [[auth.keys]] (the container listens on 0.0.0.0, where an open gateway is refused).
#   The upstream key is read from the file OPENROUTER_API_KEY_FILE names (a Docker secret).
#   Reload the config without dropping streams: docker kill -s HUP <container>.
# Or with compose: docker compose up (see docker-compose.yml).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin orgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/orgate /usr/local/bin/orgate
# OPENROUTER_API_KEY_FILE holds a path to the secret, not the secret.
# hadolint ignore=DL3064
ENV ORGATE_LISTEN=0.0.0.0:8080 \
    ORGATE_CONFIG=/etc/orgate/orgate.toml \
    OPENROUTER_API_KEY_FILE=/run/secrets/openrouter_api_key \
    ORGATE_LOG_FORMAT=json
EXPOSE 8080
# distroless's "nonroot" user.
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/orgate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/orgate"]
CMD ["serve"]
