#!/bin/sh
# A self-signed certificate for trying the nginx front end (browsers will warn; use a real one in production).
#   deploy/nginx/self-signed.sh [DIR] [NAME]   -> DIR/n2n.key, DIR/n2n.crt (default DIR: deploy/nginx/certs)
set -eu
dir="${1:-$(dirname "$0")/certs}"
name="${2:-localhost}"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$name" \
  -addext "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/n2n.key" -out "$dir/n2n.crt" 2>/dev/null
chmod 600 "$dir/n2n.key"
echo "wrote $dir/n2n.key and $dir/n2n.crt (CN=$name, valid 365 days)"
