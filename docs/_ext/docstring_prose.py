"""Let prose follow a numpydoc section in manual-bp's docstrings.

The package's docstrings often go on, after a ``Parameters`` (or ``Returns``, ``Attributes``...) list, with
a paragraph of prose at the left margin. numpydoc reads such a paragraph as part of the list, and napoleon
would render each of its lines as a parameter. Before napoleon runs, this hook starts a ``Notes`` section at
such a paragraph: a line at the margin, after a blank line, inside a list section, that is not followed by an
indented description. An attribute's first line is kept a sentence (napoleon would split it at its first
colon into a type and a description). It also escapes the bars of plain-text norms like ``|z|`` (reST
would read them as substitutions). The docstrings themselves stay as they are.
"""

import re

# |x| outside ``literals``: a norm in plain-text math, not a reST substitution reference
_BARS = re.compile(r"(?<![\\`|])\|(?=[^|\s`])([^|`]*?[^|\s`\\])\|(?![`|])")

LIST_SECTIONS = {
    "parameters", "other parameters", "returns", "yields", "raises", "warns", "attributes", "methods",
    "receives", "keyword arguments",
}


def _is_header(lines, i):
    return (
        i + 1 < len(lines)
        and lines[i].strip()
        and not lines[i].startswith(" ")
        and set(lines[i + 1].strip()) == {"-"}
        and len(lines[i + 1].strip()) >= 3
    )


def split_prose(lines):
    """``lines`` with a ``Notes`` header before each prose paragraph that trails a list section."""
    out, section, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if _is_header(lines, i):
            section = line.strip().lower()
            out += [line, lines[i + 1]]
            i += 2
            continue
        starts_paragraph = line.strip() and not line.startswith(" ") and i > 0 and not lines[i - 1].strip()
        if section in LIST_SECTIONS and starts_paragraph:
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if not following.startswith(" ") or not following.strip():
                out += ["Notes", "-----"]
                section = "notes"
        out.append(line)
        i += 1
    return out


def escape_bars(line):
    """``line`` with each plain-text ``|x|`` outside inline literals escaped as ``\\|x\\|``."""
    if line.lstrip().startswith(("|", "+")):  # a grid table or a line block: leave alone
        return line
    parts = line.split("``")
    parts[::2] = [_BARS.sub(r"\\|\1\\|", p) for p in parts[::2]]  # even parts are outside ``...``
    return "``".join(parts)


def _process(app, what, name, obj, options, lines):
    lines[:] = [escape_bars(line) for line in split_prose(list(lines))]
    if what in ("attribute", "data") and lines and ":" in lines[0]:
        # napoleon reads "type: description" from an attribute's first line; these are plain sentences, so
        # the first line becomes an escaped space (reST renders nothing for it) and napoleon finds no type
        lines.insert(0, "\\ ")


def setup(app):
    app.connect("autodoc-process-docstring", _process, priority=400)  # before napoleon (500)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
