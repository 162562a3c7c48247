"""Consoles: results on stdout, progress, notes and errors on stderr, and the one way text reaches them.

Every text that comes from outside occrecon is untrusted: file names, option values, text read
from files (an XYZ row, a binvox header line), exception messages (which quote all of those).
Printed as rich markup, ``scan[final].ply`` loses its ``[final]``, ``foo[/red]`` raises
``rich.errors.MarkupError`` in the middle of a batch and ``cuda:-1`` turns into an emoji;
printed raw, an ``ESC [2J`` in a header clears the user's screen and a newline in a message
splits one error over several lines (or fakes a second one).

So the helpers below take the untrusted parts as plain arguments, separately from the styling,
and show every one of them as itself:

* markup and emoji codes are never interpreted: the line is built as a :class:`rich.text.Text`
  (only the helper's own style is applied, to whole parts);
* control characters are shown escaped by :func:`safe_text` (``ESC`` as ``\\x1b``, a newline as
  ``\\n``, a tab as ``\\t``, bidirectional overrides as ``\\u202e``, a byte that was not valid
  UTF-8 in a file name as ``\\xff``), so each message is exactly one line and no terminal
  escape sequence reaches the terminal.

Use:

==========================================  ===================================================
``error(message)``                          ``Error: <message>`` (red prefix) on stderr
``note(message, quiet)``                    a dim note on stderr
``ok_line(input, output, details)``         ``✓ <input> → <output> (<details>)``
``skipped_line(input, reason)``             ``↷ <input>: <reason>``
``item_note(name, message, quiet)``         ``  <name>: <message>`` (dim): a note about one input
``detail(message, quiet)``                  ``  <message>`` (dim): an indented note
``plain(line, console)``                    one unstyled line (log lines, summaries) on stderr
``lines(texts, console)``                   several unstyled lines, each escaped
``result_line(*parts)``                     one line on stdout (what a command produced)
``say(*parts, console, quiet)``             a line from parts: ``"text"`` or ``("text", "style")``
``status(message)``                         the spinner context manager (``with out.status(...)``)
``print_traceback(text)``                   a ``--debug`` traceback: lines kept, controls escaped
``print_json(data)``                        one JSON object per line on stdout
``os_error_message(exc, path, doing)``      one readable line for an ``OSError`` (disk full, ...)
``click_error(exc)``                        a click/typer usage error, escaped
``safe_text(value)`` / ``styled(*parts)``   the building blocks, for renderables of your own
==========================================  ===================================================

Where a rich renderable takes text (a ``Table`` cell, a ``Progress`` column), give it
``styled(...)`` or ``Text(safe_text(...))``, never a plain ``str``: rich reads a ``str`` as
markup. ``TextColumn`` formats its template with the task's fields and then parses the result
as markup: pass ``markup=False`` to every ``TextColumn`` whose fields can hold outside text.
"""

from __future__ import annotations

import errno
import json
import re
import traceback
from typing import Any, Iterable

from rich.console import Console
from rich.text import Text

stdout = Console(highlight=False, soft_wrap=True, emoji=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

# C0 and C1 control characters and DEL; the Unicode line and paragraph separators (they break
# lines in some terminals); the bidirectional embeddings, overrides, isolates and marks (they
# reorder what is shown, "Trojan source"); the byte-order mark; and lone surrogates, which is
# how Python keeps the bytes of a file name that are not valid UTF-8 (printing one raises
# UnicodeEncodeError).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte of an undecodable file name
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe_text(value: object) -> str:
    """``str(value)`` with every control character shown escaped: one line, no terminal escapes.

    >>> safe_text("scan[final].ply")
    'scan[final].ply'
    >>> safe_text("bad\\x1b[2Jheader\\nsecond line")
    'bad\\\\x1b[2Jheader\\\\nsecond line'

    Markup is not escaped here (``[`` stays ``[``): print the result as a ``Text`` (as every helper
    of this module does) or with ``markup=False``, never inside a markup template.
    """
    return _UNSAFE.sub(_escape_char, str(value))


Part = Any  # a str (shown as itself) or a (str, style) pair


def styled(*parts: Part) -> Text:
    """A ``Text`` of ``parts``: each an untrusted value (shown with :func:`safe_text`, unstyled) or a
    ``(value, style)`` pair (the value escaped likewise, the style applied to all of it).

    >>> styled(("Error:", "red"), " ", "scan[final].ply: line 3").plain
    'Error: scan[final].ply: line 3'
    """
    text = Text(no_wrap=False)
    for part in parts:
        if isinstance(part, tuple):
            value, style = part
            text.append(safe_text(value), style=style or None)
        else:
            text.append(safe_text(part))
    return text


def say(*parts: Part, console: Console | None = None, quiet: bool = False) -> None:
    """Print one line built by :func:`styled` (stderr unless ``console`` says otherwise)."""
    if not quiet:
        (console or stderr).print(styled(*parts), highlight=False, emoji=False)


def error(message: object) -> None:
    """``Error: <message>`` on stderr, the whole message escaped (one line, whatever it holds)."""
    say(("Error:", "red"), " ", message)


def note(message: object, quiet: bool = False) -> None:
    """A dim note on stderr (silent when ``quiet``)."""
    say((message, "dim"), quiet=quiet)


def ok_line(input: object, output: object, details: object = "", quiet: bool = False) -> None:
    """``✓ <input> → <output> (<details>)``: an input done, where its output went."""
    parts: list[Part] = [("✓", "green"), " ", input, " → ", output]
    if details:
        parts += [" (", details, ")"]
    say(*parts, quiet=quiet)


def skipped_line(input: object, reason: object, quiet: bool = False) -> None:
    """``↷ <input>: <reason>``: an input skipped (its output exists, ...)."""
    say(("↷", "yellow"), " ", input, ": ", reason, quiet=quiet)


def item_note(name: object, message: object, quiet: bool = False) -> None:
    """``  <name>: <message>``, dim: a note about one input while it runs."""
    say(("  ", None), (name, "dim"), (": ", "dim"), (message, "dim"), quiet=quiet)


def detail(message: object, quiet: bool = False) -> None:
    """``  <message>``, dim: a note under a result line."""
    say(("  ", None), (message, "dim"), quiet=quiet)


def plain(line: object, console: Console | None = None, quiet: bool = False) -> None:
    """One unstyled line (stderr by default): log lines, summaries."""
    say(line, console=console, quiet=quiet)


def result_line(*parts: Part) -> None:
    """One line on stdout: what a command produced (a model folder, a converted file)."""
    say(*parts, console=stdout)


def status(message: object, spinner: str = "dots") -> Any:
    """``with out.status("loading model " + name):`` a spinner on stderr whose text is shown as itself."""
    return stderr.status(styled(message), spinner=spinner)


def print_traceback(text: str | BaseException | None = None) -> None:
    """A traceback for ``--debug``: its lines kept, each line's control characters escaped.

    ``text`` is a formatted traceback, an exception (formatted here), or None for the exception
    being handled.
    """
    if text is None:
        text = traceback.format_exc()
    elif isinstance(text, BaseException):
        text = "".join(traceback.format_exception(text))
    for line in str(text).rstrip("\n").split("\n"):
        say(line.rstrip("\r"))


def print_json(data: Any) -> None:
    """One JSON object per line on stdout (jq- and pipe-friendly; json escapes control characters)."""
    stdout.out(json.dumps(data, default=str), highlight=False)


_OS_REASONS = {
    errno.ENOSPC: "no space left on the device (the disk is full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "exists and is not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "name too long",
    errno.ELOOP: "symbolic link loop",
    errno.EIO: "input/output error",
}


def os_error_message(exc: OSError, path: object = None, doing: str = "cannot write") -> str:
    """One line for an ``OSError``: ``<path>: <doing>: <reason>``.

    ``path`` defaults to the file the error names (``exc.filename``); the reason is a plain
    phrase for the usual causes (a full disk, a read-only place, a file where a folder should be),
    else the system's own message.
    """
    where = path if path is not None else (exc.filename if exc.filename is not None else None)
    reason = _OS_REASONS.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
    return f"{where}: {doing}: {reason}" if where is not None else f"{doing}: {reason}"


def click_error(exc: Any) -> None:
    """Show a click/typer ``ClickException`` (bad option, ``typer.BadParameter``) as click does, escaped.

    Click prints option values raw; this prints the same lines (usage and hint for usage errors,
    then ``Error: <message>``) through :func:`safe_text`.
    """
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and hasattr(exc, "cmd"):  # a UsageError: usage line and help hint first
        plain(ctx.get_usage())
        if ctx.command.get_help_option(ctx) is not None:
            plain(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.")
        plain("")
    error(exc.format_message())


def lines(texts: Iterable[object], console: Console | None = None) -> None:
    """Several unstyled lines, each escaped on its own."""
    for text in texts:
        plain(text, console=console)


#: Seconds between plain progress lines where stderr is a log file, not a terminal.
LOG_INTERVAL_S = 60.0


def logs_plainly(quiet: bool) -> bool:
    """Whether progress should also go to stderr as plain lines: a live bar shows nothing in a log file until it ends."""
    return not quiet and not stderr.is_terminal


def clock(seconds: float) -> str:
    """``7m40s`` or ``10h05m``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


__all__ = [
    "LOG_INTERVAL_S",
    "clock",
    "click_error",
    "detail",
    "error",
    "item_note",
    "lines",
    "logs_plainly",
    "note",
    "ok_line",
    "os_error_message",
    "plain",
    "print_json",
    "print_traceback",
    "result_line",
    "safe_text",
    "say",
    "skipped_line",
    "status",
    "stderr",
    "stdout",
    "styled",
]
