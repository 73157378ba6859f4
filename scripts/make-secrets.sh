#!/usr/bin/env sh
# Creates the compose secrets in ./secrets (once; existing files are kept): the MongoDB root password and the
# connection string that uses it, the replica set's key file, and the patient-key secret. Never commit them.
set -eu
cd "$(dirname "$0")/.."
mkdir -p secrets
chmod 700 secrets
umask 077
[ -s secrets/mongo-root-password ] || openssl rand -hex 24 | tr -d '\n' > secrets/mongo-root-password
[ -s secrets/mongo-keyfile ] || openssl rand -base64 756 > secrets/mongo-keyfile
[ -s secrets/patient-key-secret ] || openssl rand -base64 48 | tr -d '\n' > secrets/patient-key-secret
[ -s secrets/mongodb-uri ] ||
  printf 'mongodb://huren-admin:%s@mongo:27017/huren?replicaSet=rs0&authSource=admin' \
    "$(cat secrets/mongo-root-password)" > secrets/mongodb-uri
# The broker runs as the image's user node (uid 1000) and reads its two secrets through bind mounts.
chmod 644 secrets/mongodb-uri secrets/patient-key-secret secrets/mongo-root-password secrets/mongo-keyfile
chmod 755 secrets
echo "Secrets in $(pwd)/secrets: keep them, and keep them out of version control."
