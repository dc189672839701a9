"""tools/node-vm's driver: build (or reuse) the node image, boot one node,
run the suite on it, write node-vm.json. See tools/node-vm for the usage."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nodelib import (
    hosts,  # noqa: E402
    image as imagelib,  # noqa: E402
)
from nodelib.deb import deb_fields, find_deb  # noqa: E402
from nodelib.qemu import Link, Node, Slots  # noqa: E402
from nodelib.suite import Abort, Settings, Suite  # noqa: E402

TOP = Path(__file__).resolve().parents[1]
NODE_IP = "10.213.0.1/24"      # the same link plan as tools/two-vm


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="tools/node-vm")
    form = ap.add_mutually_exclusive_group()
    form.add_argument("--quick", action="store_true", help="the CI form (default)")
    form.add_argument("--full", action="store_true")
    ap.add_argument("--results", type=Path, default=None,
                    help="default results/node-vm/ (results/node-vm-hosts/ with --hosts)")
    ap.add_argument("--deb", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path("/var/tmp/iscsiattach-node"),
                    help="where built images are kept, by recipe hash")
    ap.add_argument("--exports", type=int, default=10,
                    help="exports during the behaviour checks")
    ap.add_argument("--scale", type=int, default=100,
                    help="--full: exports for the boot-time measurement")
    ap.add_argument("--interval", type=int, default=20, help="[reconciler] interval on the node")
    ap.add_argument("--watchdog-sec", type=int, default=10)
    ap.add_argument("--max-exposure", type=float, default=3.0)
    ap.add_argument("--boot-timeout", type=float, default=2400,
                    help="seconds one qemu run may last (timeout --kill-after)")
    ap.add_argument("--keep-disk", action="store_true", help="keep the node's qcow2 overlay")
    ap.add_argument("--image-only", action="store_true", help="build or check the image, no VM")
    ap.add_argument("--hosts", action="store_true",
                    help="the live-host suite instead: a host VM keeps a volume busy (fio with "
                         "verification) through the node's restart and reboot (--full: also a "
                         "power cut and the host's own reboot); results in hosts.json")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    default = TOP / "results" / ("node-vm-hosts" if args.hosts else "node-vm")
    out = (args.results or default).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # This tool's own files from an earlier run only.
    shutil.rmtree(out / "node1", ignore_errors=True)
    for old in out.glob("*.txt"):
        old.unlink()
    for old in ("node-vm.json", "node-vm.log", "apt-install.log", "iscsiattach.conf"):
        (out / old).unlink(missing_ok=True)
    log = open(out / "node-vm.log", "a")
    t_start = time.monotonic()

    def say(text: str) -> None:
        line = f"tools/node-vm: [{time.monotonic() - t_start:7.1f}] {text}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    image = imagelib.ensure(args.cache, say)
    if args.image_only:
        facts = {k: v for k, v in image.manifest().items() if k != "packages"}
        say(f"image {image.folder}: {json.dumps(facts)}")
        return 0
    deb = find_deb(args.deb)
    fields = deb_fields(deb)
    say(f"package {deb.name} (Depends: {fields.get('Depends', '-')})")
    if args.hosts:
        return run_hosts(args, image, deb, out, say, t_start)
    settings = Settings(exports=args.exports, scale=args.scale if args.full else 0,
                        interval=args.interval, watchdog_sec=args.watchdog_sec,
                        max_exposure=args.max_exposure)
    slots = Slots(1, say)
    links = Path(tempfile.mkdtemp(prefix="iscsiattach-node."))
    # No peer in this suite: the link gives the node its address (the API
    # and the portal listen there), and a peer can join it by the path.
    link = Link(links / "node1.sock", links / "peer.sock", NODE_IP)
    node = Node("node1", image, out / "node1", link=link, boot_timeout=args.boot_timeout)
    suite = Suite(node, deb, settings, out, say)
    full = args.full
    try:
        suite.check("boot", suite.boot, fatal=True)
        suite.check("install", suite.install, fatal=True)
        if full:
            suite.check("security", suite.security)
        suite.check("configure", suite.configure, fatal=True)
        suite.check("populate", lambda: suite.populate(settings.exports), fatal=True)
        suite.check("ready-after-restore", suite.ready_after_restore)
        suite.check("kill-9", suite.kill9)
        suite.check("stop-leaves-exports", suite.stop_leaves_exports)
        if full:
            suite.check("watchdog", suite.watchdog)
            suite.check("targetctl-stop", suite.targetctl_stop)
        suite.check("reboot", lambda: suite.reboot("reboot"))
        if full:
            suite.check("targetctl-saved-reboot", suite.targetctl_saved_reboot)
            suite.check("power-cut", suite.power_cut)
            suite.check(f"boot-{settings.scale}-exports", suite.scale)
    except Abort as exc:
        say(f"stopped: the rest depends on '{exc}'")
    finally:
        node.poweroff()
        node.kill()
        slots.release()
        shutil.rmtree(links, ignore_errors=True)
        if not args.keep_disk:
            (node.folder / "disk.qcow2").unlink(missing_ok=True)
    failed = [c["name"] for c in suite.checks if not c["pass"]]
    report = {"form": "full" if full else "quick", "commit": head_commit(),
              "pass": not failed, "failed": failed,
              "wall_s": round(time.monotonic() - t_start, 1),
              "deb": {"file": deb.name, **{k: fields.get(k) for k in ("Version", "Depends")}},
              "image": {k: v for k, v in image.manifest().items() if k != "packages"},
              "settings": vars(settings), "boots": node.boots, "checks": suite.checks}
    (out / "node-vm.json").write_text(json.dumps(report, indent=1) + "\n")
    say(f"{len(suite.checks) - len(failed)} of {len(suite.checks)} checks passed; "
        f"results in {out}/node-vm.json")
    say("PASS" if not failed else f"FAIL: {', '.join(failed)}")
    return 0 if not failed else 1


def run_hosts(args: argparse.Namespace, image, deb: Path, out: Path, say, t_start: float) -> int:
    daemon = deb.with_name(deb.name.replace("iscsiattach_", "iscsiattachd_", 1))
    if not daemon.is_file():
        raise SystemExit(f"tools/node-vm: no {daemon.name} beside {deb.name} (tools/package "
                         "builds both)")
    for old in ("hosts.json", "node-commands.log", "host-install.log", "host-attach.log",
                "fio.json"):
        (out / old).unlink(missing_ok=True)
    for name in ("node1", "host1"):
        shutil.rmtree(out / name, ignore_errors=True)
    report = hosts.run(image, {"cli": deb, "daemon": daemon}, out, args.full,
                       args.boot_timeout, say)
    report.update({"form": "full" if args.full else "quick", "commit": head_commit(),
                   "wall_s": round(time.monotonic() - t_start, 1),
                   "debs": [deb.name, daemon.name]})
    (out / "hosts.json").write_text(json.dumps(report, indent=1) + "\n")
    say("PASS" if report["pass"] else f"FAIL: {', '.join(report['failed']) or 'incomplete'}")
    return 0 if report["pass"] else 1


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(TOP), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
