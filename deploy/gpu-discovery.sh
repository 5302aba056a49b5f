#!/usr/bin/env bash
# Spark resource discovery script: this node's GPUs (nvidia-smi's indices) as the JSON Spark
# expects, e.g. {"name": "gpu", "addresses": ["0", "1"]}.
set -euo pipefail
indices=$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd, - | sed 's/,/","/g')
echo "{\"name\": \"gpu\", \"addresses\": [\"${indices}\"]}"
