# ai2in's Python driver: one persistent namespace per code context, driven by the agent
# over fd 3 with newline-delimited JSON (see crates/agent/src/kernels.rs). print() goes out
# line by line as `stdout`/`stderr` messages; the last expression's value and display()
# calls as `result` bundles; errors with tracebacks of the user's cell only; figures of
# matplotlib as PNG after each run. SIGINT raises KeyboardInterrupt in the running cell.
import ast, base64, builtins, io, json, linecache, os, socket, sys, threading, traceback

_sock = socket.socket(fileno=3)
_rfile = _sock.makefile("rb")
_current = {"id": None}
_EXEC_FILE = "<cell>"
# One message at a time: the user's threads print too, and a long message (a figure) is
# sent in pieces that must not interleave with another's. Re-entrant: sending flushes.
_send_lock = threading.RLock()


def _send(msg):
    with _send_lock:
        # What was written before this message goes out before it, whichever stream.
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _Stream) and stream.name != msg["type"]:
                stream.flush()
        _sock.sendall((json.dumps(msg) + "\n").encode())


class _Stream(io.TextIOBase):
    """Line-buffered: a print() is one message, and partial lines go out on flush."""

    def __init__(self, name):
        self.name = name
        self.pending = ""

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.pending += s
        cut = self.pending.rfind("\n") + 1
        if cut:
            text, self.pending = self.pending[:cut], self.pending[cut:]
            _send({"type": self.name, "id": _current["id"], "text": text})
        return len(s)

    def flush(self):
        if self.pending:
            text, self.pending = self.pending, ""
            _send({"type": self.name, "id": _current["id"], "text": text})

    def isatty(self):
        return False


def _bundle(obj):
    data = {}
    reprs = [("_repr_html_", "text/html"), ("_repr_markdown_", "text/markdown"), ("_repr_svg_", "image/svg+xml"),
             ("_repr_png_", "image/png"), ("_repr_jpeg_", "image/jpeg"), ("_repr_json_", "application/json"),
             ("_repr_latex_", "text/latex")]
    mb = getattr(obj, "_repr_mimebundle_", None)
    if callable(mb) and not isinstance(obj, type):
        try:
            out = mb()
            if isinstance(out, tuple):
                out = out[0]
            for k, v in (out or {}).items():
                data[k] = base64.b64encode(v).decode() if isinstance(v, bytes) else v
        except Exception:
            pass
    for attr, mime in reprs:
        fn = getattr(obj, attr, None)
        if callable(fn) and not isinstance(obj, type) and mime not in data:
            try:
                v = fn()
            except Exception:
                continue
            if v is None:
                continue
            if isinstance(v, tuple):
                v = v[0]
            if isinstance(v, bytes):
                v = base64.b64encode(v).decode()
            data[mime] = v
    if _is_figure(obj) and "image/png" not in data:
        buf = io.BytesIO()
        obj.savefig(buf, format="png", bbox_inches="tight")
        data["image/png"] = base64.b64encode(buf.getvalue()).decode()
    data["text/plain"] = repr(obj)
    return data


def _is_figure(obj):
    mpl = sys.modules.get("matplotlib.figure")
    return mpl is not None and isinstance(obj, mpl.Figure)


def display(*objs):
    for obj in objs:
        _send({"type": "result", "id": _current["id"], "is_main_result": False, "data": _bundle(obj)})


def _flush_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        _send({"type": "result", "id": _current["id"], "is_main_result": False,
               "data": {"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": repr(fig)}})
    plt.close("all")


def _no_input(prompt=""):
    raise EOFError("input() is not available: code runs without a terminal; pass data in the code or a file")


_ns = {"__name__": "__main__", "__builtins__": builtins, "display": display}
builtins.input = _no_input
os.environ.setdefault("MPLBACKEND", "Agg")
_loop = None  # created on the first top-level await (importing asyncio costs startup time)
sys.stdout = _Stream("stdout")
sys.stderr = _Stream("stderr")


_DRIVER_FILE = _user_traceback_file = __file__ if "__file__" in globals() else "<string>"


def _user_traceback(exc):
    """The traceback without the driver's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != _DRIVER_FILE]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _run(code):
    # Tracebacks show the cell's lines.
    linecache.cache[_EXEC_FILE] = (len(code), None, code.splitlines(True), _EXEC_FILE)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = ast.parse(code, _EXEC_FILE, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    for node, mode in ((ast.Module(tree.body, type_ignores=[]), "exec"), (last, "eval")):
        if node is None:
            continue
        compiled = compile(node, _EXEC_FILE, mode, flags=flags)
        result = eval(compiled, _ns)
        if compiled.co_flags & 0x80:  # CO_COROUTINE: top-level await
            global _loop
            if _loop is None:
                import asyncio

                _loop = asyncio.new_event_loop()
            result = _loop.run_until_complete(result)
        if mode == "eval" and result is not None:
            _ns["_"] = result
            _send({"type": "result", "id": _current["id"], "is_main_result": True, "data": _bundle(result)})


def main():
    _send({"type": "ready", "language": "python", "pid": os.getpid()})
    count = 0
    while True:
        try:
            raw = _rfile.readline()
        except KeyboardInterrupt:
            continue  # an interrupt that came just after a run ended
        if not raw:
            return  # the agent went away
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if msg.get("type") != "execute":
            continue
        count += 1
        _current["id"] = msg.get("id")
        os.environ.update({str(k): str(v) for k, v in (msg.get("env") or {}).items()})
        try:
            _run(msg.get("code", ""))
        except BaseException as exc:  # noqa: BLE001 - everything the user's code raises is reported
            name = type(exc).__name__
            if isinstance(exc, SyntaxError):
                tb = "".join(traceback.format_exception_only(type(exc), exc))
            else:
                tb = _user_traceback(exc)
            _send({"type": "error", "id": _current["id"], "name": name, "value": str(exc), "traceback": tb})
        try:
            _flush_figures()
        except BaseException:
            pass
        try:
            _send({"type": "done", "id": _current["id"], "execution_count": count, "exit_code": None})
        except KeyboardInterrupt:
            _send({"type": "done", "id": _current["id"], "execution_count": count, "exit_code": None})


main()
