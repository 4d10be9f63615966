# The router image: `router-service` installed from wheels, run as a non-root user, with
# alembic.ini in the workdir so that `alembic upgrade head` works in the container as well.
#
#   docker build -t router-service .
#   docker run -e API_KEY=... -e DATABASE_URL=postgresql://... -p 8000:8000 router-service

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# .dockerignore lets in only the package, its build metadata and alembic.ini.
COPY . .
# Wheels of the package and of every dependency: the runtime stage installs them offline.
RUN pip wheel --wheel-dir /wheels .


FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels router-service \
    && useradd --system --user-group --uid 10001 --home-dir /app --no-create-home router

WORKDIR /app
COPY alembic.ini ./
# alembic.ini looks for the migrations in ./router_service/migrations: point that at the
# installed package, so that there is one copy of the code. var/ is the default SQLite home.
RUN ln -s "$(python -c 'import pathlib, router_service; print(pathlib.Path(router_service.__file__).parent)')" router_service \
    && mkdir var && chown router:router var

USER router
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
# Migrating is idempotent, so every start brings the schema to head before serving.
CMD ["sh", "-c", "router-service migrate && exec router-service serve --host 0.0.0.0 --port 8000"]
