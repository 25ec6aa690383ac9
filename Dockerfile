# Apache Airflow's official image with this package installed as a wheel: what a company image does to add a
# provider. Installing it never changes the image's Airflow (apache-airflow is pinned to the image's own version
# on the same pip line, as Airflow's docs ask; pip's only-if-needed upgrades keep the image's other libraries at the
# versions of its constraints file). The two DAG files are written into the image's DAGs folder; job
# definitions and configurations come from outside (compose mounts them; the Helm chart syncs them with git).
#   docker build -t airflow-scheduled-jobs:0.1.0 .
#   docker build --build-arg AIRFLOW_VERSION=3.1.8 -t airflow-scheduled-jobs:0.1.0-airflow3.1.8 .
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.12

FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS wheel
COPY --chown=airflow:0 pyproject.toml README.md CHANGELOG.md /home/airflow/src/
COPY --chown=airflow:0 plugins/scheduled_jobs /home/airflow/src/plugins/scheduled_jobs
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /home/airflow/wheels /home/airflow/src

FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
COPY --from=wheel /home/airflow/wheels /tmp/scheduled-jobs-wheels
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
      "$(ls /tmp/scheduled-jobs-wheels/airflow_scheduled_jobs-*.whl)[celery]" \
 && scheduled-jobs dag-files /opt/airflow/dags
