# The MPQ image: one image for `mpq api`, `mpq worker`, `mpq beat` and `mpq db upgrade`
# (see docker-compose.yml). CPU-only torch.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# bubblewrap isolates the .pt2 importer (engine/io/_sandbox.py); without it .pt2 uploads
# are refused.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

# The CPU build of torch first (PyPI's default wheel bundles CUDA, gigabytes unused):
# its 2.13.0+cpu version satisfies the project's torch==2.13.0 pin below.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app

# The dependencies alone, from pyproject.toml, so that a source change rebuilds only
# the last layers.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Editable, not `pip install .`: service/db/migrate.py finds alembic.ini and alembic/
# at the source root (three levels above itself), which a wheel does not ship, so
# `mpq db upgrade` and /readyz need the package to run from /app.
COPY . .
RUN pip install --no-deps -e . && python -c "import service.db.migrate as m; assert m.ALEMBIC_INI.is_file()"

# Non-root; /data is the MPQ_DATA_DIR volume (blobs shared by the API and the workers).
# A named volume mounted there starts as a copy of this directory, owner included.
RUN useradd --create-home --uid 1000 mpq \
    && mkdir -p /data/blobs \
    && chown -R mpq:mpq /data
USER mpq
ENV MPQ_DATA_DIR=/data

EXPOSE 8000
ENTRYPOINT ["mpq"]
CMD ["--help"]
