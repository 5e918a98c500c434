"""The Dockerfile builds like the README: its builder apt list equals scripts/deps.sh's build
list, its cmake configure uses scripts/run.sh's flags; its GLIBC_TUNABLES is the systemd unit's
and one glibc applies; and its HEALTHCHECK command really answers against the built binary.
Usage: check_dockerfile.py SRC BINARY"""
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

# The allocator setting: the same in the image and the systemd unit, and one glibc applies (an
# unknown tunable or a value out of range is ignored silently, so ask the loader what it sees).
tunables = re.search(r"^ENV GLIBC_TUNABLES=(\S+)$", runtime, re.M)
unit = re.search(r"^Environment=GLIBC_TUNABLES=(\S+)$", read("deploy/systemd/signal-server.service"),
                 re.M)
if not tunables or not unit or tunables.group(1) != unit.group(1):
    errors.append("GLIBC_TUNABLES must be set, to one value, in the Dockerfile runtime stage "
                  "(ENV) and deploy/systemd/signal-server.service (Environment=)")
else:
    loader = next((p for p in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1")
                   if os.path.exists(p)), None) or fail("no glibc loader to ask (ld.so)")
    seen = subprocess.run([loader, "--list-tunables"], capture_output=True, text=True,
                          env=dict(os.environ, GLIBC_TUNABLES=tunables.group(1))).stdout
    for setting in tunables.group(1).split(":"):
        name, value = setting.split("=")
        if not re.search(rf"^{re.escape(name)}: 0x{int(value):x} ", seen, re.M):
            errors.append(f"glibc does not apply {setting} (ld.so --list-tunables)")

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
print(f"ok: builder packages and cmake flags match scripts/; GLIBC_TUNABLES applied; "
      "HEALTHCHECK works on PORT")
