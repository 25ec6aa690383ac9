# The Airflow image with this project's pinned requirements (the same requirements.txt that
# scripts/install.sh installs). The project's own code is mounted (dags/, plugins/, job_definitions/,
# configurations/), so editing a definition never needs a rebuild.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

COPY requirements.txt /opt/scheduled-jobs/requirements.txt
RUN pip install --no-cache-dir -r /opt/scheduled-jobs/requirements.txt

# `scheduled-jobs validate|preview` in every container, running the mounted package.
ENV PYTHONPATH=/opt/airflow/plugins
COPY --chmod=755 docker/scheduled-jobs /home/airflow/.local/bin/scheduled-jobs
