#!/bin/sh
set -e
echo "serving on $PORT"
exec busybox httpd -f -p "$PORT"
