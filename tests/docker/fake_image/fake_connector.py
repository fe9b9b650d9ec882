"""A stand-in connector for the DockerRunner tests: each verb exercises one part of the plumbing.

spec                      one SPEC line
check --config F          CONNECTION_STATUS saying whether F is readable and writable; exits with
                          config["exit"] (default 0); writes config["stderr"] to stderr
read --config F ...       config["lines"] RECORD lines, then sleeps config["sleep"] seconds;
                          with config["exit_on_sigterm"], SIGTERM exits 143 the way a Python
                          connector does, flushing what stdout still holds
write --config F ...      copies stdin to stdout byte for byte; at EOF prints the byte count to
                          stderr and exits with config["exit"]
"""

import json
import signal
import sys
import time


def arg(name):
    argv = sys.argv
    return argv[argv.index(name) + 1] if name in argv else None


def emit(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    verb = sys.argv[1]
    if verb == "spec":
        emit({"type": "SPEC", "spec": {"connectionSpecification": {"type": "object"}}})
        return 0
    config_path = arg("--config")
    with open(config_path) as handle:
        config = json.load(handle)
    if config.get("stderr"):
        sys.stderr.write(config["stderr"] + "\n")
        sys.stderr.flush()
    if verb == "check":
        try:
            open(config_path, "a").close()
            writable = True
        except OSError:
            writable = False
        echoed = {k: v for k, v in config.items() if k != "stderr"}  # stderr text stays on stderr
        status = {"readable": True, "writable": writable, "config": echoed}
        emit(
            {
                "type": "CONNECTION_STATUS",
                "connectionStatus": {"status": "SUCCEEDED", "message": json.dumps(status)},
            }
        )
        return int(config.get("exit", 0))
    if verb == "read":
        if config.get("exit_on_sigterm"):
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        for n in range(int(config.get("lines", 0))):
            emit({"type": "RECORD", "record": {"stream": "s", "data": {"n": n}, "emitted_at": 0}})
        time.sleep(float(config.get("sleep", 0)))
        return int(config.get("exit", 0))
    if verb == "write":
        total = 0
        while True:
            chunk = sys.stdin.buffer.read1(1 << 16)
            if not chunk:
                break
            total += len(chunk)
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        sys.stderr.write(f"bytes {total}\n")
        return int(config.get("exit", 0))
    sys.stderr.write(f"unknown verb {verb}\n")
    return 2


sys.exit(main())
