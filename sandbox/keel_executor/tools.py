"""The file tools: read_file, write_file, edit_file, list_files.

Every path a tool is given goes through resolve() (relative paths are taken from
/workspace), and is opened only through safefs (open_read, open_write, open_dir),
which decides what may be opened and how: regular files only, never under /proc,
/sys or /dev, never through a magic link, writes only under the writable roots.
The executor's thread does this work with the sandbox user's file identity
(privileges), so permissions are the user's and new files are the user's.

read_file streams: it keeps the numbered lines it returns (capped to maxOutput
characters, head and tail, as cap_text would) and stops at offset+limit, then
counts further lines through at most COUNT_BUDGET more bytes so it can still say
how many there are; past that it says the file goes on. edit_file must hold the
whole file and refuses one over MAX_EDIT_BYTES.

A tool fails with ToolError(code, message); the server answers it as
{"ok": false, "error": {"code", "message"}}, so the codes are part of the protocol.
cap_text is the output cap the shell shares.
"""

import codecs
import errno
import os
import re
import stat

from . import safefs
from .layout import WORKSPACE

MAX_LIST_ENTRIES = 1000
DEFAULT_READ_LIMIT = 2000
# edit_file reads, decodes and rewrites the whole file in memory: at most this many bytes.
MAX_EDIT_BYTES = 8 * 1024 * 1024
# After the lines read_file returns, how many more bytes it reads (and does not keep) to count the rest.
COUNT_BUDGET = 16 * 1024 * 1024
READ_CHUNK = 1 << 16
# What str.splitlines() breaks lines at, so streamed line numbers match the whole-text ones.
_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class ToolError(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


def resolve(path):
    if not isinstance(path, str) or not path:
        raise ToolError("InvalidArguments", "path must be a non-empty string")
    if "\0" in path:
        raise ToolError("InvalidArguments", "path must not contain NUL")
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(WORKSPACE, path))


def required_int(args, name, minimum):
    """An integer argument the host always sends; missing or wrong is the caller's bug, said plainly."""
    v = args.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ToolError("InvalidArguments", "%s must be an integer >= %d (got %r)" % (name, minimum, v))
    return v


def optional_int(args, name, default, minimum):
    v = args.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ToolError("InvalidArguments", "%s must be an integer >= %d (got %r)" % (name, minimum, v))
    return v


def cap_text(text, max_chars):
    """Keep 40% head and 60% tail, say what was cut (mirrors capOutput in common/tools.ts)."""
    if len(text) <= max_chars:
        return text, False
    head = int(max_chars * 0.4)
    tail = max_chars - head
    cut = len(text) - head - tail
    return "%s\n[... %d characters cut; %d in total ...]\n%s" % (text[:head], cut, len(text), text[len(text) - tail:]), True


class TextCap:
    """cap_text of a text written in pieces, holding at most about 3 x max_chars characters."""

    def __init__(self, max_chars):
        self.max_chars = max_chars
        self.head = []
        self.head_len = 0
        self.tail = []
        self.tail_len = 0
        self.total = 0

    def write(self, s):
        if not s:
            return
        self.total += len(s)
        room = self.max_chars - self.head_len
        if room > 0:
            self.head.append(s[:room])
            self.head_len += min(room, len(s))
        self.tail.append(s)
        self.tail_len += len(s)
        if self.tail_len > 2 * self.max_chars:
            joined = "".join(self.tail)[-self.max_chars:]
            self.tail, self.tail_len = [joined], len(joined)

    def text(self):
        if self.total <= self.max_chars:
            return "".join(self.head), False
        head = int(self.max_chars * 0.4)
        tail = self.max_chars - head
        tail_text = "".join(self.tail)[-tail:] if tail else ""
        cut = self.total - head - tail
        return "%s\n[... %d characters cut; %d in total ...]\n%s" % ("".join(self.head)[:head], cut, self.total, tail_text), True


def _tool_error(e, path):
    """The ToolError for an OSError or safefs.Refused met while opening `path`."""
    if isinstance(e, safefs.Refused):
        return ToolError(e.code, e.message)
    if isinstance(e, FileNotFoundError):
        return ToolError("NotFound", "%s does not exist" % path)
    if isinstance(e, IsADirectoryError):
        return ToolError("IsADirectory", "%s is a directory; use list_files" % path)
    if isinstance(e, NotADirectoryError):
        return ToolError("NotADirectory", "%s is not a directory" % path)
    if isinstance(e, PermissionError):
        return ToolError("PermissionDenied", "permission denied: %s" % path)
    if e.errno == errno.ELOOP:
        return ToolError("Forbidden", "%s leads through a /proc link or too many symbolic links" % path)
    if e.errno == errno.EXDEV:
        return ToolError("Forbidden", "%s leads outside its folder" % path)
    if e.errno == errno.ENXIO:
        return ToolError("NotAFile", "%s is a fifo or socket; the file tools read and write regular files only" % path)
    return ToolError("IOError", "%s: %s" % (path, e.strerror or e))


def _open(opener, path):
    try:
        return opener(path)
    except (OSError, safefs.Refused) as e:
        raise _tool_error(e, path)


class _LineReader:
    """Numbered lines start..start+limit-1 (0-based) of a UTF-8 stream, split as str.splitlines() splits."""

    def __init__(self, start, limit, cap):
        self.start, self.end, self.cap = start, start + limit, cap
        self.index = 0  # lines completed so far
        self.begun = False  # the current line has started
        self.pending_cr = False  # the last piece ended in \r: a \n next is part of that break

    def _in_range(self):
        return self.start <= self.index < self.end

    def _text(self, s):
        if not s:
            return
        if not self.begun:
            self.begun = True
            if self._in_range():
                self.cap.write("%6d\t" % (self.index + 1))
        if self._in_range():
            self.cap.write(s)

    def _end_line(self):
        if not self.begun and self._in_range():
            self.cap.write("%6d\t" % (self.index + 1))
        if self._in_range():
            self.cap.write("\n")
        self.index += 1
        self.begun = False

    def feed(self, s):
        pos = 0
        if self.pending_cr:
            self.pending_cr = False
            if s.startswith("\n"):
                pos = 1
        for m in _LINE_BREAK.finditer(s, pos):
            self._text(s[pos:m.start()])
            self._end_line()
            if m.group() == "\r" and m.end() == len(s):
                self.pending_cr = True
            pos = m.end()
        self._text(s[pos:])

    def finish(self):
        if self.begun:
            self._end_line()

    @property
    def done(self):
        return self.index >= self.end


def op_read_file(rid, args):
    path = resolve(args.get("path"))
    offset = optional_int(args, "offset", 1, 1)
    limit = optional_int(args, "limit", DEFAULT_READ_LIMIT, 1)
    max_chars = required_int(args, "maxOutput", 1)
    fd, st = _open(safefs.open_read, path)
    start = offset - 1
    cap = TextCap(max_chars)
    lines = _LineReader(start, limit, cap)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    counted_from = None
    eof = False
    try:
        with os.fdopen(fd, "rb", buffering=0) as f:
            while True:
                if lines.done:
                    if counted_from is None:
                        counted_from = f.tell()
                    elif f.tell() - counted_from >= COUNT_BUDGET:
                        break
                chunk = f.read(READ_CHUNK if not lines.done else 1 << 20)
                if not chunk:
                    lines.feed(decoder.decode(b"", final=True))
                    lines.finish()
                    eof = True
                    break
                lines.feed(decoder.decode(chunk))
    except UnicodeDecodeError:
        raise ToolError("Binary", "%s is not a UTF-8 text file (%d bytes)" % (path, st.st_size))
    except OSError as e:
        raise _tool_error(e, path)
    content, truncated = cap.text()
    shown = max(0, min(lines.index, lines.end) - start)
    result = {"path": path, "content": content, "firstLine": start + 1, "lastLine": start + shown}
    if eof:
        result["totalLines"] = lines.index
        result["truncated"] = truncated or start + shown < lines.index
    else:
        # Not read to the end: say so in the text the model sees, since no line total is known.
        result["content"] = "%s%s[lines %d-%d shown; the file goes on (%d bytes in all); use offset and limit to read others]" % (
            content, "" if not content or content.endswith("\n") else "\n", start + 1, start + shown, st.st_size)
        result["truncated"] = True
        result["moreLines"] = True
        result["bytes"] = st.st_size
    return result


def _write_all(fd, data):
    os.ftruncate(fd, 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def op_write_file(rid, args):
    path = resolve(args.get("path"))
    content = args.get("content")
    if not isinstance(content, str):
        raise ToolError("InvalidArguments", "content must be a string")
    data = content.encode("utf-8")
    fd, _ = _open(safefs.open_write, path)
    try:
        _write_all(fd, data)
    except OSError as e:
        raise _tool_error(e, path)
    finally:
        os.close(fd)
    return {"path": path, "bytes": len(data)}


def op_edit_file(rid, args):
    path = resolve(args.get("path"))
    old, new = args.get("old_string"), args.get("new_string")
    if not isinstance(old, str) or not old or not isinstance(new, str):
        raise ToolError("InvalidArguments", "old_string (non-empty) and new_string must be strings")
    fd, st = _open(safefs.open_read, path)
    try:
        if st.st_size > MAX_EDIT_BYTES:
            raise ToolError("FileTooLarge", "%s is %d bytes; edit_file edits files up to %d bytes (it holds the whole file). "
                            "Use the shell (sed, python) for bigger files" % (path, st.st_size, MAX_EDIT_BYTES))
        with os.fdopen(fd, "rb") as f:
            fd = None
            data = f.read(MAX_EDIT_BYTES + 1)
    finally:
        if fd is not None:
            os.close(fd)
    if len(data) > MAX_EDIT_BYTES:
        raise ToolError("FileTooLarge", "%s grew past %d bytes while it was read; edit_file edits files up to that size" % (path, MAX_EDIT_BYTES))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError("Binary", "%s is not a UTF-8 text file" % path)
    count = text.count(old)
    if count == 0:
        raise ToolError("NoMatch", "old_string was not found in %s; read the file and copy the text exactly" % path)
    if count > 1:
        raise ToolError("Ambiguous", "old_string occurs %d times in %s; include more surrounding text so it occurs once" % (count, path))
    out = text.replace(old, new, 1).encode("utf-8")
    wfd, _ = _open(safefs.open_write, path)
    try:
        _write_all(wfd, out)
    except OSError as e:
        raise _tool_error(e, path)
    finally:
        os.close(wfd)
    return {"path": path, "replacements": 1}


def op_list_files(rid, args):
    path = resolve(args.get("path") or WORKSPACE)
    recursive = bool(args.get("recursive"))
    fd = _open(safefs.open_dir, path)
    entries = []
    state = {"truncated": False}
    try:
        if recursive:
            _list_tree(fd, "", entries, state, 0)
        else:
            with os.scandir(fd) as it:
                for e in it:
                    entries.append(e.name + "/" if _is_dir(e) else e.name)
    except PermissionError as e:
        raise ToolError("PermissionDenied", "%s: %s" % (path, e.strerror))
    finally:
        os.close(fd)
    entries.sort()
    if len(entries) > MAX_LIST_ENTRIES:
        entries = entries[:MAX_LIST_ENTRIES]
        state["truncated"] = True
    return {"path": path, "entries": entries, "truncated": state["truncated"]}


def _is_dir(entry):
    """As os.walk and os.scandir count it: a symlink to a directory is a directory (stat only, nothing opened)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _list_tree(fd, prefix, entries, state, depth):
    """Like os.walk(top-down): every name, directories with a trailing "/"; descends only into real
    directories (never through a symlink), and not into .git, which is noise to an agent."""
    subdirs = []
    with os.scandir(fd) as it:
        for e in it:
            if _is_dir(e):
                entries.append(prefix + e.name + "/")
                if e.name != ".git" and not e.is_symlink():
                    subdirs.append(e.name)
            else:
                entries.append(prefix + e.name)
    if len(entries) > MAX_LIST_ENTRIES * 10 or depth > 200:
        state["truncated"] = True
        return
    for name in sorted(subdirs):
        if state["truncated"]:
            return
        try:
            child = safefs.open_child_dir(fd, name)
        except OSError:
            continue  # gone, replaced, or not ours to read: os.walk skips those too
        try:
            if stat.S_ISDIR(os.fstat(child).st_mode):
                _list_tree(child, prefix + name + "/", entries, state, depth + 1)
        finally:
            os.close(child)
