"""``{runpython}``: a code block that runs when the site is built, shown with what it printed.

The blocks of one page run in order in one namespace (a tutorial builds on its earlier blocks), in a fresh
namespace per page. Each renders as its code and, beneath it, its captured stdout. An exception stops the
build with the page, the block's number and line, and the traceback: a tutorial that no longer runs cannot be
published.
"""

import contextlib
import io
import traceback

from docutils import nodes
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

_NAMESPACES = "runpython_namespaces"


class RunPython(SphinxDirective):
    has_content = True
    required_arguments = 0
    optional_arguments = 0

    def run(self):
        docname = self.env.docname
        store = self.env.temp_data.setdefault(_NAMESPACES, {})  # temp_data lives while one page is read
        namespace = store.setdefault(docname, {"__name__": f"runpython:{docname}"})
        count = self.env.temp_data.get("runpython_count", 0) + 1
        self.env.temp_data["runpython_count"] = count
        code = "\n".join(self.content)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"<{docname}: runpython block {count}>", "exec"), namespace)
        except Exception as exc:  # any failure of the tutorial's code fails the build
            raise ExtensionError(
                f"{self.env.doc2path(docname)}:{self.lineno}: runpython block {count} raised "
                f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            ) from exc
        code_node = nodes.literal_block(code, code, language="python", classes=["runpython-code"])
        result = [code_node]
        printed = out.getvalue()
        if printed:
            output = nodes.literal_block(printed, printed, language="text", classes=["runpython-output"])
            result.append(output)
        return result


def setup(app):
    app.add_directive("runpython", RunPython)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
