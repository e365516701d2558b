# The operator image: a static (musl) binary on distroless, running as non-root.
# For docker users: docker build -t ghcr.io/apphealth/apphealth-operator:<appVersion> . (as
# examples/e2e.sh does). `make image` does not use this file: it builds the image without a
# container engine, FROM scratch (tools/image; README, Container image).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin apphealth-operator --example flaky-app \
 && cp target/x86_64-unknown-linux-musl/release/apphealth-operator /apphealth-operator \
 && cp target/x86_64-unknown-linux-musl/release/examples/flaky-app /flaky-app

# The flaky demo app, for `make e2e` (docker build --target flaky-app).
FROM gcr.io/distroless/static-debian12:nonroot AS flaky-app
COPY --from=build /flaky-app /flaky-app
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/flaky-app", "--listen", "0.0.0.0:8080"]

# The operator (the default target).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /apphealth-operator /apphealth-operator
# The same user the Helm chart runs it as (runAsNonRoot, runAsUser 65532).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/apphealth-operator"]
CMD ["run"]
