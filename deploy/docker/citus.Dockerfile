# syntax=docker/dockerfile:1
# Citus 13.2.2 on PostgreSQL 15: the coordinator and the workers of the compose profile `citus`. Built from the
# repository root by deploy/build-images.sh citus, which stages the vendored upstream tarball
# (../shared/vendor/citus-13.2.2.tar.gz) into deploy/.citus/: no registry carries Citus for us, and the public
# image citusdata/citus:13 is what production runs (see deploy/docker-compose.yml).
ARG POSTGRES_IMAGE=postgres:15

# The same build as on a machine (deploy/citus/build.sh: Debian's build dependencies, the one header fix for
# PostgreSQL >= 15.14, configure, make), then installed once more into /out so that only Citus's files are copied.
FROM ${POSTGRES_IMAGE} AS build
RUN apt-get -o DPkg::Lock::Timeout=600 update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-minimal >/dev/null
COPY deploy/citus/build.sh /src/deploy/citus/build.sh
COPY deploy/.citus/ /src/vendor/
RUN CITUS_BUILD_DIR=/build /src/deploy/citus/build.sh /src/vendor/citus-13.2.2.tar.gz \
 && make -C /build install DESTDIR=/out >/dev/null \
 && pkglibdir=$(pg_config --pkglibdir) && cp "$pkglibdir/citus.version" "/out$pkglibdir/" \
 && rm -rf /out/usr/include

FROM ${POSTGRES_IMAGE}
# citus.so's one run-time library that PostgreSQL itself does not already bring.
RUN apt-get -o DPkg::Lock::Timeout=600 update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libcurl4 >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /out/ /
# Every node: Citus loaded at start; two-phase commit for multi-shard writes needs prepared transactions.
CMD ["postgres", "-c", "shared_preload_libraries=citus", "-c", "max_prepared_transactions=200"]
