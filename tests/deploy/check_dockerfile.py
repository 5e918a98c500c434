"""The Dockerfile builds like the README: its builder apt list equals scripts/deps.sh's build
list, its cmake configure uses scripts/run.sh's flags; and its HEALTHCHECK command really
answers against the built binary.  Usage: check_dockerfile.py SRC BINARY"""
import json
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_test_lib import Server, fail  # noqa: E402

src, binary = sys.argv[1], sys.argv[2]
read = lambda rel: open(os.path.join(src, rel)).read()  # noqa: E731
dockerfile = read("Dockerfile").replace("\\\n", " ")   # join continuation lines
errors = []

# Stages: the first FROM is the builder.
stages = re.split(r"^FROM\s+", dockerfile, flags=re.M)[1:]
if len(stages) < 2 or not stages[0].startswith("debian:bookworm ") or \
        not stages[-1].startswith("debian:bookworm-slim"):
    fail("Dockerfile: expected a debian:bookworm builder and a debian:bookworm-slim runtime")


def apt_packages(text):
    m = re.search(r"apt-get install ((?:\S+\s+)*?)(?:&&|$)", text, re.M)
    return [w for w in (m.group(1).split() if m else []) if not w.startswith("-")]


m = re.search(r"^packages=\((.*?)\)", read("scripts/deps.sh"), re.M | re.S)
deps_build = m.group(1).split() if m else fail("scripts/deps.sh: no packages=(...) build list")
docker_build = apt_packages(stages[0])
if sorted(docker_build) != sorted(deps_build):
    errors.append(f"builder apt packages {docker_build} != scripts/deps.sh build list {deps_build}")


def configure_flags(text, where):
    m = re.search(r"cmake -S (.*?)(?:>|&&|$)", text, re.M)
    if not m:
        fail(f"{where}: no `cmake -S ...` configure line")
    return sorted(shlex.split("-S " + m.group(1)))


run_flags = configure_flags(read("scripts/run.sh"), "scripts/run.sh")
docker_flags = configure_flags(stages[0], "Dockerfile")
if docker_flags != run_flags:
    errors.append(f"Dockerfile cmake configure {docker_flags} != scripts/run.sh {run_flags}")

runtime = stages[-1]
for needle, why in (("EXPOSE 3002", "port"), ("STOPSIGNAL SIGTERM", "drain on stop"),
                    ("HEALTHCHECK", "health check")):
    if needle not in runtime:
        errors.append(f"Dockerfile runtime stage lacks {needle} ({why})")
user = re.search(r"^USER\s+(\S+)", runtime, re.M)
if not user or user.group(1).split(":")[0] in ("root", "0"):
    errors.append("Dockerfile runtime stage must switch to a non-root USER")
for pkg in ("libboost-json1.81.0", "libboost-url1.81.0", "libhiredis0.14", "libssl3"):
    if pkg not in apt_packages(runtime):
        errors.append(f"Dockerfile runtime stage does not install {pkg}")

# The HEALTHCHECK command (exec form) must pass against a live server, with PORT honoured.
hc = re.search(r"HEALTHCHECK.*?CMD\s+(\[.*\])", runtime)
if not hc:
    errors.append("Dockerfile: HEALTHCHECK must use the exec form CMD [...]")
else:
    argv = json.loads(hc.group(1))
    with Server(binary) as server:
        env = dict(os.environ, PORT=str(server.port))
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            errors.append(f"HEALTHCHECK {argv} failed against a live server: {r.stderr.strip()}")
    # ...and fail once nothing listens there any more.
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
    if r.returncode == 0:
        errors.append("HEALTHCHECK succeeds with no server listening")

if errors:
    fail("\n  " + "\n  ".join(errors))
print(f"ok: builder packages and cmake flags match scripts/; HEALTHCHECK works on PORT")
