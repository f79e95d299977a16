#!/bin/bash
# one segment of the timed default run; appends start/stop stamps to /root/timed/segments.log
cd /root/timed/src
echo "start $(date +%s) $(date -Is) $(git rev-parse --short HEAD)" >> /root/timed/segments.log
PYTHONPATH=/root/timed/src/src:/root/native/pkg /work/main/.venv/bin/python benchmarks/efficacy.py --task formula \
  --work /root/timed/work --out /root/timed/result.json >> /root/timed/out.json 2>> /root/timed/log
echo "stop $(date +%s) $(date -Is) rc=$?" >> /root/timed/segments.log
