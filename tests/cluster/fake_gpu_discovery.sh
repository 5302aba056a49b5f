#!/usr/bin/env bash
# A worker's GPU discovery script for machines without one: advertises one `gpu` address so
# Spark's GPU scheduling path runs (the training function then falls back to the CPU).
echo '{"name": "gpu", "addresses": ["0"]}'
