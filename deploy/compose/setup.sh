#!/usr/bin/env bash
# One-time set-up for deploy/compose.yaml: random passwords for the server's MQTT login and for
# PostgreSQL, written into server.toml, drivetag.passwd and postgres_password; a private CA and
# a broker certificate for TLS (replace with your own CA's for production).
# Add head units afterwards with:
#   docker compose -f deploy/compose.yaml exec mosquitto mosquitto_passwd -b /mosquitto/config/drivetag.passwd DEVICE_ID PASSWORD
set -euo pipefail
cd "$(dirname "$0")"
host="${1:-localhost}"
mqtt_password="$(openssl rand -hex 16)"
pg_password="$(openssl rand -hex 16)"
sed -i "s/^password = .*/password = \"$mqtt_password\"/" server.toml
sed -i "s|^url = \"postgres://drivetag:[^@]*@|url = \"postgres://drivetag:$pg_password@|" server.toml
printf '%s' "$pg_password" > postgres_password
: > drivetag.passwd
docker run --rm -v "$PWD:/work" eclipse-mosquitto:2 \
    mosquitto_passwd -b /work/drivetag.passwd drivetag-server "$mqtt_password"
mkdir -p certs
openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=drivetag CA" \
    -keyout certs/ca.key -out certs/ca.crt
openssl req -newkey rsa:3072 -nodes -subj "/CN=$host" -keyout certs/broker.key -out certs/broker.csr
openssl x509 -req -in certs/broker.csr -CA certs/ca.crt -CAkey certs/ca.key -CAcreateserial \
    -days 825 -extfile <(printf 'subjectAltName=DNS:%s' "$host") -out certs/broker.crt
chmod 0644 certs/broker.key
echo "Done. Give head units certs/ca.crt as [mqtt] ca_file and url = \"mqtts://$host:8883\"."
