"""run_code: Executions, rich results, errors in user code, streaming (callbacks and the
iterator), contexts."""

from __future__ import annotations

import subprocess

import pytest

import ai2in
from ai2in import Sandbox


def _host_has_matplotlib() -> bool:
    try:
        return subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"]).returncode == 0
    except OSError:
        return False


def test_value_and_output(sbx: Sandbox) -> None:
    ex = sbx.run_code("print('hi')\n1 + 1")
    assert ex.text == "2" and ex.results[0].is_main_result
    assert ex.logs.stdout == ["hi\n"] and ex.logs.stderr == []
    assert ex.error is None and ex.execution_count >= 1 and ex.duration_ms >= 0
    assert ex.context_id.startswith("ctx_")


def test_no_value_gives_no_text(sbx: Sandbox) -> None:
    assert sbx.run_code("x = 1").text is None


def test_error_in_user_code_is_not_an_exception(sbx: Sandbox) -> None:
    ex = sbx.run_code("a = 1\nb = 0\na / b")
    assert ex.error is not None
    assert ex.error.name == "ZeroDivisionError" and ex.error.value == "division by zero"
    assert "a / b" in ex.error.traceback
    assert ex.text is None


def test_rich_results(sbx: Sandbox) -> None:
    code = """
class Rich:
    def _repr_html_(self): return "<b>bold</b>"
    def _repr_svg_(self): return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    def _repr_json_(self): return {"a": 1}
    def _repr_markdown_(self): return "**bold**"
    def _repr_latex_(self): return "$x^2$"
    def __repr__(self): return "Rich()"
Rich()
"""
    main = sbx.run_code(code).results[-1]
    assert main.is_main_result and main.text == "Rich()" and str(main) == "Rich()"
    assert main.html == "<b>bold</b>" and main._repr_html_() == "<b>bold</b>"
    assert main.svg is not None and main._repr_svg_() == main.svg
    assert main.json == {"a": 1} and main.data["application/json"] == {"a": 1}
    assert main.markdown == main._repr_markdown_() == "**bold**"
    assert main.latex == main._repr_latex_() == "$x^2$"
    assert main.png is None and main._repr_png_() is None and main._repr_jpeg_() is None
    assert set(main.formats()) >= {"text/plain", "text/html", "image/svg+xml"}


@pytest.mark.skipif(not _host_has_matplotlib(), reason="the host's python3 has no matplotlib")
def test_matplotlib_figure_gives_png(sbx: Sandbox) -> None:
    code = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 2, 3], [1, 4, 9])
fig
"""
    figures = [r for r in sbx.run_code(code, timeout_ms=60_000).results if r.png]
    assert figures and figures[0].png is not None and figures[0].png.startswith(b"\x89PNG")
    assert figures[0]._repr_png_() == figures[0].png


def test_language_env_and_timeout(sbx: Sandbox) -> None:
    assert sbx.run_code("[1, 2].map(x => x * 2).length", "javascript").text == "2"
    bash = sbx.run_code("echo from bash; false", "bash")
    assert "".join(bash.logs.stdout) == "from bash\n" and bash.exit_code == 1
    assert sbx.run_code("import os; os.environ['K']", env={"K": "v"}).text == "'v'"
    slow = sbx.run_code("import time; time.sleep(30)", timeout_ms=300)
    assert slow.error is not None and slow.error.name == "KeyboardInterrupt"


def test_callbacks_are_called_in_order(sbx: Sandbox) -> None:
    seen: list[tuple[str, object]] = []
    code = "import sys\nprint('one')\nprint('two', file=sys.stderr)\nprint('three')\n7"
    ex = sbx.run_code(
        code,
        on_stdout=lambda t: seen.append(("out", t)),
        on_stderr=lambda t: seen.append(("err", t)),
        on_result=lambda r: seen.append(("result", r.text)),
        on_error=lambda e: seen.append(("error", e.name)),
    )
    assert seen == [("out", "one\n"), ("err", "two\n"), ("out", "three\n"), ("result", "7")]
    assert ex.text == "7" and ex.logs.stdout == ["one\n", "three\n"]
    errors: list[ai2in.ExecutionError] = []
    ex = sbx.run_code("raise ValueError('bad')", on_error=errors.append)
    assert [e.value for e in errors] == ["bad"] and ex.error == errors[0]


def test_stream_iterator_yields_typed_events(sbx: Sandbox) -> None:
    events = list(sbx.run_code_stream("print(1)\nimport sys; print(2, file=sys.stderr)\n3"))
    assert events[0] == ai2in.StdoutEvent("1\n") and events[1] == ai2in.StderrEvent("2\n")
    assert isinstance(events[2], ai2in.ResultEvent) and events[2].result.text == "3"
    assert isinstance(events[-1], ai2in.DoneEvent) and events[-1].execution.text == "3"
    failed = list(sbx.run_code_stream("1/0"))
    assert isinstance(failed[0], ai2in.ErrorEvent) and failed[0].error.name == "ZeroDivisionError"
    assert isinstance(failed[-1], ai2in.DoneEvent) and failed[-1].execution.error is not None


def test_contexts_keep_state_and_restart(sbx: Sandbox) -> None:
    ctx = sbx.create_context(cwd="/tmp")
    assert ctx.language == "python" and ctx.cwd == "/tmp" and ctx.alive
    sbx.run_code("counter = 41", context=ctx)
    assert sbx.run_code("counter + 1", context=ctx).text == "42"
    assert sbx.run_code("import os; os.getcwd()", context=ctx.id).text == "'/tmp'"
    assert sbx.run_code("'counter' in dir()").text == "False"  # the default context
    assert ctx.id in [c.id for c in sbx.list_contexts()]
    restarted = sbx.restart_context(ctx)
    assert restarted.id == ctx.id
    assert sbx.run_code("'counter' in dir()", context=ctx).text == "False"
    js = sbx.create_context("javascript")
    sbx.run_code("var n = 5", context=js)
    assert sbx.run_code("n * 2", context=js).text == "10"
    sbx.delete_context(ctx)
    sbx.delete_context(js.id)
    assert ctx.id not in [c.id for c in sbx.list_contexts()]
    with pytest.raises(ai2in.NotFoundError):
        sbx.run_code("1", context=ctx)
