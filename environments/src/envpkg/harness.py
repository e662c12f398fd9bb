"""agentgen envpkg worker harness (embedded in the agentgen binary; spec shared/spec/envpkg.md).

Owns one package's Python side: the private protocol channel, the `agentgen_env` module, the
Python-level guards of spec section 10 (an audit hook plus thread/process denial), importing
env.py, and running Env(), tool calls, state(), verify() and generate_task() on request.

Protocol: frames of a 4-byte big-endian length plus UTF-8 JSON, requests on the original
stdin, replies on the original stdout. Both are moved to private descriptors before any
package code runs, so package output never reaches the protocol (fds 0, 1 and 2 become
/dev/null). argv: harness, package dir, scratch
root (the worker's writable directory; each episode gets a fresh subdirectory).
"""
import sys
import os

_IN = os.dup(0)
_OUT = os.dup(1)
_devnull = os.open(os.devnull, os.O_RDWR)
for _fd in (0, 1, 2):
    os.dup2(_devnull, _fd)
os.close(_devnull)

import _thread

_real_start = _thread.start_new_thread


def _no_thread(*_a, **_k):
    _violation("starting a thread")
    raise PermissionError("threads are not allowed in envpkg workers")


_thread.start_new_thread = _no_thread
if hasattr(_thread, "start_joinable_thread"):
    _thread.start_joinable_thread = _no_thread

import ast
import datetime as _dt
import hashlib
import importlib
import inspect
import io
import json
import random
import shutil
import struct
import traceback
import types

PKG = os.path.realpath(sys.argv[1])
SCRATCH_ROOT = os.path.realpath(sys.argv[2])
DATA = os.path.join(PKG, "data")
sys.argv = ["env"]
sys.path[:] = [PKG] + [p for p in sys.path[1:] if p and not p.startswith(PKG)]
sys.dont_write_bytecode = True
sys.pycache_prefix = "/proc/agentgen-no-bytecode"

# ---------------------------------------------------------------- guard state and audit hook

_G = {"on": False, "violation": None, "scratch": None}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DENIED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn",
                    "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.system",
                    "os.startfile", "pty.", "ctypes.", "signal.pthread_kill", "_posixsubprocess")
_PATH_EVENTS = {"os.remove": 1, "os.rename": 2, "os.mkdir": 1, "os.rmdir": 1, "os.chmod": 1,
                "os.chown": 1, "os.link": 2, "os.symlink": 2, "os.truncate": 1, "os.utime": 1,
                "os.chflags": 1, "os.lchflags": 1, "os.mkfifo": 1, "os.mknod": 1,
                "shutil.rmtree": 1, "shutil.copyfile": 2, "shutil.copymode": 2,
                "shutil.copystat": 2, "shutil.move": 2, "shutil.chown": 1, "tempfile.mkstemp": 1,
                "tempfile.mkdtemp": 1}
_DENIED_MODULES = {"ctypes", "_ctypes", "cffi"}


def _violation(what):
    if _G["on"] and _G["violation"] is None:
        _G["violation"] = what


def _in_scratch(path):
    s = _G["scratch"]
    if s is None:
        return False
    try:
        if isinstance(path, int):
            return False
        p = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return p == s or p.startswith(s + os.sep)


def _under_data(path):
    p = os.path.realpath(path)
    return p == DATA or p.startswith(DATA + os.sep)


def _sqlite_ok(db):
    if isinstance(db, (bytes, bytearray)):
        db = os.fsdecode(bytes(db))
    if not isinstance(db, str):
        db = os.fspath(db) if hasattr(db, "__fspath__") else ""
        if not isinstance(db, str):
            return False
    if db in (":memory:", "", "file::memory:") or db.startswith("file::memory:?"):
        return True
    if db.startswith("file:"):
        path, _, query = db[5:].partition("?")
        params = [q.split("=", 1) for q in query.split("&") if q]
        mode = {k: v for k, v in ((p[0], p[1] if len(p) > 1 else "") for p in params)}
        if mode.get("mode") == "memory":
            return True
        return mode.get("mode") == "ro" and _under_data(path)
    return False


def _deny(what):
    _violation(what)
    raise PermissionError(f"sandbox: {what} is not allowed")


def _hook(event, args):
    if not _G["on"]:
        return
    if event == "open":
        path, mode, flags = args
        writing = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and flags & _WRITE_FLAGS)
        if writing and not _in_scratch(path):
            _deny(f"opening {path!r} for writing outside the scratch directory")
    elif event == "import":
        if args[0].partition(".")[0] in _DENIED_MODULES:
            _deny(f"importing {args[0]}")
    elif event == "sqlite3.connect":
        if not _sqlite_ok(args[0]):
            _deny(f"opening SQLite database {args[0]!r}")
    elif event in _PATH_EVENTS:
        for p in args[: _PATH_EVENTS[event]]:
            if not _in_scratch(p):
                _deny(f"{event} on {p!r} outside the scratch directory")
    elif event.startswith(_DENIED_PREFIXES):
        _deny(event)


sys.addaudithook(_hook)

# ---------------------------------------------------------------- agentgen_env


class ToolError(Exception):
    """A tool's refusal; str(exc) becomes the agent's error message."""


_CTX = {"seed": None, "now": None}


def _now():
    if _CTX["now"] is None:
        raise ToolError("now() is only available inside an episode")
    return _CTX["now"]


def _today():
    return _now().date()


def _seed():
    if _CTX["seed"] is None:
        raise ToolError("seed() is only available inside an episode")
    return _CTX["seed"]


def _rng(*salt):
    text = str(_seed()) + "".join("/" + str(s) for s in salt)
    return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def _data_path(*parts):
    p = os.path.realpath(os.path.join(DATA, *[str(x) for x in parts]))
    if not (p == DATA or p.startswith(DATA + os.sep)):
        raise ValueError(f"data_path: {os.path.join(*[str(x) for x in parts])!r} escapes data/")
    if not os.path.exists(p):
        raise FileNotFoundError(f"data_path: no file data/{os.path.join(*[str(x) for x in parts])}")
    return p


def _scratch_dir():
    return _G["scratch"]


_api = types.ModuleType("agentgen_env")
_api.__doc__ = "The envpkg v1 runtime API (spec section 5.4)."
for _n, _v in {"ToolError": ToolError, "now": _now, "today": _today, "seed": _seed,
               "rng": _rng, "data_path": _data_path, "scratch_dir": _scratch_dir}.items():
    setattr(_api, _n, _v)
ToolError.__module__ = "agentgen_env"
sys.modules["agentgen_env"] = _api

# ---------------------------------------------------------------- protocol


def _read_exact(n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(_IN, n - len(buf))
        if not chunk:
            os._exit(0)
        buf += chunk
    return bytes(buf)


def _recv():
    (n,) = struct.unpack(">I", _read_exact(4))
    return json.loads(_read_exact(n))


def _send(obj):
    data = json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")
    data = struct.pack(">I", len(data)) + data
    while data:
        n = os.write(_OUT, data)
        data = data[n:]


class _Fail(Exception):
    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _pkg_trace(exc):
    """The traceback of exc trimmed to frames in package files, plus the exception line."""
    lines = []
    for fr in traceback.extract_tb(exc.__traceback__):
        f = os.path.realpath(fr.filename) if fr.filename and not fr.filename.startswith("<") else ""
        if f.startswith(PKG + os.sep):
            rel = f[len(PKG) + 1:]
            lines.append(f"{rel}:{fr.lineno} in {fr.name}: {(fr.line or '').strip()}")
    if isinstance(exc, SyntaxError) and exc.filename:
        f = os.path.realpath(exc.filename)
        rel = f[len(PKG) + 1:] if f.startswith(PKG + os.sep) else exc.filename
        lines.append(f"{rel}:{exc.lineno}: {(exc.text or '').strip()}")
    msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " | ".join(lines + [msg])


def _guarded(fn, *args, **kwargs):
    """Run package code with the guard on. Exceptions propagate; crashes and violations raise
    _Fail."""
    _G["on"] = True
    try:
        return fn(*args, **kwargs)
    except MemoryError as e:
        raise _Fail("env.crash", f"MemoryError (over memory_mb): {_pkg_trace(e)}") from None
    except _Fail:
        raise
    except Exception:
        raise
    except BaseException as e:
        raise _Fail("env.crash", f"{type(e).__name__} escaped package code: {_pkg_trace(e)}") from None
    finally:
        _G["on"] = False
        v = _G["violation"]
        if v is not None:
            _G["violation"] = None
            raise _Fail("env.sandbox", v)


def _protocol(what, fn, *args, **kwargs):
    """Run package code where any Exception is env.protocol."""
    try:
        return _guarded(fn, *args, **kwargs)
    except _Fail:
        raise
    except Exception as e:
        raise _Fail("env.protocol", f"{what} raised: {_pkg_trace(e)}") from None


def _dumps(v, what):
    try:
        return json.dumps(v, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise _Fail("env.protocol", f"{what} is not JSON-serialisable: {e}") from None


# ---------------------------------------------------------------- episode context

_S = {"module": None, "env": None, "ep": 0, "calls": []}


def _fresh_scratch():
    _drop_scratch()
    _S["ep"] += 1
    path = os.path.join(SCRATCH_ROOT, f"ep{_S['ep']}")
    os.mkdir(path, 0o700)
    _G["scratch"] = path
    os.chdir(path)
    os.environ["TMPDIR"] = path
    import tempfile
    tempfile.tempdir = path
    return path


def _drop_scratch():
    s = _G["scratch"]
    if s is not None:
        os.chdir(SCRATCH_ROOT)
        shutil.rmtree(s, ignore_errors=True)
        _G["scratch"] = None


def _clock(text, seed):
    if text:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return t.astimezone(_dt.timezone.utc)
    base = _dt.datetime(2025, 1, 1, tzinfo=_dt.timezone.utc)
    return base + _dt.timedelta(seconds=seed % 31536000)


# ---------------------------------------------------------------- operations


def _screen(req):
    """Static import screen (spec 9.1 item 4) over the package's Python sources."""
    stdlib = set(sys.stdlib_module_names)
    local = set(req["local_modules"])
    denied = set(req["denied"])
    for rel in req["files"]:
        path = os.path.join(PKG, rel)
        with open(path, "rb") as fh:
            src = fh.read()
        try:
            tree = ast.parse(src, filename=rel)
        except SyntaxError as e:
            return {"ok": True, "problem": {"code": "pkg.import",
                                            "detail": f"{rel}:{e.lineno}: SyntaxError: {e.msg}"}}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                root = n.partition(".")[0]
                if n in denied or root in denied:
                    return {"ok": True, "problem": {"code": "pkg.import", "detail":
                            f"{rel}:{node.lineno}: import of {n!r} is not allowed"}}
                if root not in stdlib and root not in local and root != "agentgen_env":
                    return {"ok": True, "problem": {"code": "pkg.import", "detail":
                            f"{rel}:{node.lineno}: {root!r} is neither the standard library nor "
                            f"a package module"}}
    return {"ok": True, "problem": None}


def _sig(cls, name):
    raw = inspect.getattr_static(cls, name, None)
    if raw is None or not callable(getattr(cls, name, None)):
        return None
    try:
        sig = inspect.signature(getattr(cls, name))
    except (TypeError, ValueError):
        return {"params": [], "opaque": True}
    params = list(sig.parameters.values())
    if inspect.isfunction(raw) and params:
        params = params[1:]
    return {"params": [{"name": p.name, "kind": p.kind.name,
                        "default": p.default is not inspect.Parameter.empty} for p in params],
            "opaque": False}


def _load(req):
    _fresh_scratch()
    try:
        mod = _guarded(importlib.import_module, "env")
    except _Fail:
        raise
    except Exception as e:
        raise _Fail("pkg.import", f"importing env.py: {_pkg_trace(e)}") from None
    finally:
        _drop_scratch()
    _S["module"] = mod
    cls = getattr(mod, "Env", None)
    info = {"ok": True, "has_env": inspect.isclass(cls), "has_state": False,
            "has_verify": callable(getattr(mod, "verify", None)),
            "has_generate": callable(getattr(mod, "generate_task", None)), "tools": {}}
    if inspect.isclass(cls):
        info["has_state"] = callable(getattr(cls, "state", None))
        for t in req["tools"]:
            info["tools"][t] = _sig(cls, t)
    return info


def _begin(req):
    _S["env"] = None
    _S["calls"] = []
    _fresh_scratch()
    seed = req["seed"]
    _CTX["seed"] = seed
    _CTX["now"] = _clock(req.get("clock"), seed)
    random.seed(os.urandom(16))
    cls = _S["module"].Env
    _S["env"] = _protocol("Env()", cls, seed, req.get("params") or {})
    return {"ok": True}


def _call(req):
    name, args = req["name"], req["args"]
    env = _S["env"]
    rec = {"step": req["step"], "name": name, "arguments": args, "result": None, "error": None}
    err = None
    try:
        result = _guarded(lambda: getattr(env, name)(**args))
    except _Fail:
        raise
    except ToolError as e:
        err = str(e)
    except Exception as e:
        s = str(e)
        err = f"{type(e).__name__}: {s}" if s else type(e).__name__
    if err is not None:
        rec["error"] = err
        obs = json.dumps({"error": err}, ensure_ascii=False)
        _S["calls"].append((req["index"], rec))
        return {"ok": True, "obs": obs, "error": True}
    if isinstance(result, str):
        obs = result
        rec["result"] = result
    else:
        obs = _dumps(result, f"the result of {name}")
        rec["result"] = json.loads(obs)
    _S["calls"].append((req["index"], rec))
    reply = {"ok": True, "obs": obs, "error": False}
    if req.get("snap"):
        reply["state"] = _state_value()
    return reply


def _state_value():
    return json.loads(_dumps(_protocol("state()", _S["env"].state), "state()"))


def _jsonpath_diff(a, b, ptr=""):
    """The first JSON pointer where a and b differ as JSON values, else None."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if (type(a) is type(b) and a == b) else (ptr or "/")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return None if a == b else (ptr or "/")
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = ptr + "/" + str(k).replace("~", "~0").replace("/", "~1")
            if k not in a or k not in b:
                return p
            d = _jsonpath_diff(a[k], b[k], p)
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _jsonpath_diff(x, y, f"{ptr}/{i}")
            if d is not None:
                return d
        return None if len(a) == len(b) else f"{ptr}/{min(len(a), len(b))}"
    return None if (type(a) is type(b) and a == b) else (ptr or "/")


def _norm(text):
    return " ".join(text.casefold().split())


def _verify(req):
    mod = _S["module"]
    calls = [rec for _, rec in sorted(_S["calls"] + [(r["index"], r["rec"]) for r in req["rejected"]],
                                      key=lambda x: x[0])]
    _S["calls"] = []
    answer = req["answer"]
    if req.get("gold") is not None or req.get("mode") == "gold_state":
        st = _state_value()
        diff = _jsonpath_diff(st, req["gold"])
        checks = [{"name": "gold_state", "passed": diff is None,
                   "detail": "" if diff is None else f"state differs at {diff}"}]
        a = _norm(answer)
        for s in req.get("contains") or []:
            ok = _norm(s) in a
            checks.append({"name": "answer_contains", "passed": ok,
                           "detail": f"answer contains {s!r}"})
        passed = all(c["passed"] for c in checks)
        return {"ok": True, "verdict": {"passed": passed, "reward": 1.0 if passed else 0.0,
                                        "checks": checks}}
    before = _dumps(_protocol("state()", _S["env"].state), "state()")
    task = json.loads(req["task"])
    out = _protocol("verify()", mod.verify, task, _S["env"], req["turn"], answer, calls)
    after = _dumps(_protocol("state()", _S["env"].state), "state()")
    if before != after:
        raise _Fail("env.protocol", "verify() changed state()")
    return {"ok": True, "verdict": _verdict(out)}


def _verdict(out):
    if isinstance(out, bool):
        return {"passed": out, "reward": 1.0 if out else 0.0, "checks": []}
    if not isinstance(out, dict) or not isinstance(out.get("passed"), bool):
        raise _Fail("env.protocol", f"verify() returned {type(out).__name__}, not a bool or a dict "
                                    f"with a boolean 'passed'")
    passed = out["passed"]
    reward = out.get("reward", 1.0 if passed else 0.0)
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not 0 <= reward <= 1:
        raise _Fail("env.protocol", f"verify() returned reward {reward!r}, not a number in [0, 1]")
    if (reward == 1.0) != passed:
        raise _Fail("env.protocol", f"verify() returned reward {reward} with passed={passed}")
    checks = []
    raw = out.get("checks", [])
    if not isinstance(raw, list):
        raise _Fail("env.protocol", "verify() returned 'checks' that is not a list")
    for c in raw:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(
                c.get("passed"), bool):
            raise _Fail("env.protocol", f"verify() returned a malformed check {c!r}")
        detail = c.get("detail", "")
        checks.append({"name": c["name"], "passed": c["passed"],
                       "detail": detail if isinstance(detail, str) else str(detail)})
    if passed and not all(c["passed"] for c in checks):
        raise _Fail("env.protocol", "verify() returned passed=True with a failed check")
    return {"passed": passed, "reward": float(reward), "checks": checks}


def _state(_req):
    return {"ok": True, "state": _state_value()}


def _end(_req):
    _S["env"] = None
    _S["calls"] = []
    _CTX["seed"] = None
    _CTX["now"] = None
    _drop_scratch()
    return {"ok": True}


def _generate(req):
    seed = req["seed"]
    _fresh_scratch()
    _CTX["seed"] = seed
    _CTX["now"] = _clock(req.get("clock"), seed)
    try:
        rec = _protocol("generate_task()", _S["module"].generate_task, seed)
        text = _dumps(rec, f"generate_task({seed})")
    finally:
        _end(None)
    return {"ok": True, "task": text}


_OPS = {"screen": _screen, "load": _load, "begin": _begin, "call": _call, "verify": _verify,
        "state": _state, "end": _end, "generate": _generate,
        "ping": lambda _r: {"ok": True}}


def _main():
    v = sys.version_info
    _send({"ok": True, "hello": "agentgen-envpkg-harness/1",
           "python": f"{v[0]}.{v[1]}.{v[2]}"})
    while True:
        req = _recv()
        try:
            reply = _OPS[req["op"]](req)
        except _Fail as f:
            reply = {"ok": False, "code": f.code, "detail": f.detail}
            _send(reply)
            if f.code in ("env.crash", "env.sandbox"):
                os._exit(70)
            continue
        except MemoryError:
            _send({"ok": False, "code": "env.crash", "detail": "MemoryError in the harness"})
            os._exit(70)
        except Exception as e:
            reply = {"ok": False, "code": "env.protocol",
                     "detail": f"harness: {type(e).__name__}: {e}"}
        _send(reply)


_main()
