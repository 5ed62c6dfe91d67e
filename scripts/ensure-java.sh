#!/usr/bin/env bash
# Make sure a Java runtime is available for the Spark tests (pyspark starts a JVM): use the
# `java` already on PATH (or under JAVA_HOME), else install Debian's openjdk-17-jre-headless
# with apt-get (as root).  Prints the java version line on stderr; exits non-zero if no
# Java can be had, so the caller can say loudly that the Spark tests will be skipped.
set -uo pipefail

have_java() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then return 0; fi
  command -v java >/dev/null 2>&1
}

if ! have_java; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-java: installing openjdk-17-jre-headless with apt-get" >&2
    # The man-page directory must exist or the JRE's postinst fails on slim images.
    mkdir -p /usr/share/man/man1
    (apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         openjdk-17-jre-headless) >&2 \
      || { echo "ensure-java: apt-get install failed" >&2; exit 1; }
  else
    echo "ensure-java: no java and cannot install one (not root or no apt-get)" >&2
    exit 1
  fi
fi
have_java || { echo "ensure-java: java still not found after install" >&2; exit 1; }
java -version 2>&1 | head -n 1 >&2
