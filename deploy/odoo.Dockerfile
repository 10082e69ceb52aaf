# Odoo 19 (official image) with dte_native installed into its Python. The addon itself is
# mounted by docker-compose.yml (/mnt/extra-addons/l10n_cl_dte), so editing it needs no rebuild.
#   docker build -f deploy/odoo.Dockerfile -t dte-odoo .
FROM odoo:19

USER root
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libxml2-dev libxmlsec1-dev libxmlsec1-openssl libssl-dev libcurl4-openssl-dev libhiredis-dev \
      libzint-dev nlohmann-json3-dev pybind11-dev libgmime-3.0-dev libpng-dev python3-dev python3-pip \
      python3-prometheus-client python3-cryptography \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /tmp/dte-src
COPY pyproject.toml CMakeLists.txt README.md ./
COPY cpp cpp
COPY tests/cpp tests/cpp
COPY dte_native dte_native
RUN pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" \
 && pip install -q --no-build-isolation --config-settings=cmake.define.DTE_BUILD_TESTS=OFF . \
 && apt-get purge -y --auto-remove build-essential cmake ninja-build \
 && cd / && rm -rf /tmp/dte-src /root/.cache

COPY deploy/odoo/odoo.conf /etc/odoo/odoo.conf
RUN mkdir -p /var/lib/odoo/dte-keys && chown -R odoo: /var/lib/odoo
USER odoo
WORKDIR /
