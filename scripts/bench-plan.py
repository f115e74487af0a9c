#!/usr/bin/env python3
"""From a disko configuration to a reviewed list of steps: `nix-dabei import-disko` + `nix-dabei plan`
against disko producing its `_create` script with nix-instantiate (disko's lib and nixpkgs' lib from
../shared/nix-sources). Medians over several runs of each, alternating which goes first; also the
release binary's size. Run by scripts/bench."""

import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

RUNS = 7
EXAMPLES = ["zfs", "zfs-encrypted-root", "simple-efi"]


def shared(folder: str) -> pathlib.Path:
    for parent in pathlib.Path(__file__).resolve().parents:
        candidate = parent / "shared" / folder
        if candidate.is_dir():
            return candidate
    sys.exit(f"bench-plan: shared/{folder} not found beside the checkout")


def timed(command: list[str], cwd: pathlib.Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    repo = pathlib.Path(__file__).resolve().parent.parent
    binary = repo / "target/release/nix-dabei"
    examples = shared("disko-examples")
    with tempfile.TemporaryDirectory() as scratch:
        work = pathlib.Path(scratch)
        for tarball in ["nixpkgs-lib.tar.gz", "disko.tar.gz"]:
            with tarfile.open(shared("nix-sources") / tarball) as archive:
                archive.extractall(work, filter="data")
        print(f"bench: release binary {binary.stat().st_size / 2**20:.1f} MiB ({binary})")
        for name in EXAMPLES:
            config = examples / f"{name}.json"
            expression = work / f"{name}.nix"
            expression.write_text(
                f"""let
  lib = import {work}/nixpkgs-lib/lib;
  diskoLib = import {work}/disko/lib {{ inherit lib; makeTest = null; eval-config = null; qemu-common = null; }};
  eval = lib.evalModules {{ modules = [ {{
    options.disko.devices = lib.mkOption {{ type = diskoLib.toplevel; }};
    config.disko.devices = (builtins.fromJSON (builtins.readFile {config})).disko.devices;
  }} ]; }};
in eval.config.disko.devices._create
"""
            )
            plan = work / f"{name}.toml"
            ours_cmd = [
                "sh",
                "-c",
                f"'{binary}' import-disko '{config}' --offline-size 64G -o '{plan}' && '{binary}' plan '{plan}'",
            ]
            disko_cmd = ["nix-instantiate", "--eval", "--strict", "--json", str(expression)]
            ours: list[float] = []
            disko: list[float] = []
            for run in range(RUNS):
                pair = [(ours, ours_cmd), (disko, disko_cmd)]
                for times, command in pair if run % 2 == 0 else reversed(pair):
                    times.append(timed(command, work))
            ms = lambda values: f"median {statistics.median(values) * 1000:.1f} ms " + (
                f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"
            )
            print(
                f"bench: {name}.json to reviewed steps over {RUNS} runs: nix-dabei import-disko + plan "
                f"{ms(ours)}; disko's _create by nix-instantiate {ms(disko)}; "
                f"ratio {statistics.median(ours) / statistics.median(disko):.3f}"
            )


if __name__ == "__main__":
    main()
