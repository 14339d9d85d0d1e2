"""The file tools: read_file, write_file, edit_file, list_files.

Every path a tool is given goes through resolve() (relative paths are taken from
/workspace), and a tool reads or writes a file only through _read_bytes and
_write_bytes (list_files lists with os.walk/os.scandir). Keep it that way: how a
path is opened for a file tool is meant to be decided in this one module.

A tool fails with ToolError(code, message); the server answers it as
{"ok": false, "error": {"code", "message"}}, so the codes are part of the protocol.
cap_text is the output cap the shell shares.
"""

import os

from .layout import WORKSPACE

DEFAULT_MAX_OUTPUT = 16000
MAX_LIST_ENTRIES = 1000
DEFAULT_READ_LIMIT = 2000


class ToolError(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


def resolve(path):
    if not isinstance(path, str) or not path:
        raise ToolError("InvalidArguments", "path must be a non-empty string")
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(WORKSPACE, path))


def cap_text(text, max_chars):
    """Keep 40% head and 60% tail, say what was cut (mirrors capOutput in common/tools.ts)."""
    if len(text) <= max_chars:
        return text, False
    head = int(max_chars * 0.4)
    tail = max_chars - head
    cut = len(text) - head - tail
    return "%s\n[... %d characters cut; %d in total ...]\n%s" % (text[:head], cut, len(text), text[len(text) - tail:]), True


def op_read_file(rid, args):
    path = resolve(args.get("path"))
    offset = int(args.get("offset") or 1)
    limit = int(args.get("limit") or DEFAULT_READ_LIMIT)
    max_chars = int(args.get("maxOutput") or DEFAULT_MAX_OUTPUT)
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError("Binary", "%s is not a UTF-8 text file (%d bytes)" % (path, len(data)))
    lines = text.splitlines()
    start = max(offset, 1) - 1
    chosen = lines[start:start + limit]
    body = "".join("%6d\t%s\n" % (start + i + 1, line) for i, line in enumerate(chosen))
    content, truncated = cap_text(body, max_chars)
    return {
        "path": path,
        "content": content,
        "totalLines": len(lines),
        "firstLine": start + 1,
        "lastLine": start + len(chosen),
        "truncated": truncated or start + len(chosen) < len(lines),
    }


def op_write_file(rid, args):
    path = resolve(args.get("path"))
    content = args.get("content")
    if not isinstance(content, str):
        raise ToolError("InvalidArguments", "content must be a string")
    data = content.encode("utf-8")
    _write_bytes(path, data)
    return {"path": path, "bytes": len(data)}


def op_edit_file(rid, args):
    path = resolve(args.get("path"))
    old, new = args.get("old_string"), args.get("new_string")
    if not isinstance(old, str) or not old or not isinstance(new, str):
        raise ToolError("InvalidArguments", "old_string (non-empty) and new_string must be strings")
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError("Binary", "%s is not a UTF-8 text file" % path)
    count = text.count(old)
    if count == 0:
        raise ToolError("NoMatch", "old_string was not found in %s; read the file and copy the text exactly" % path)
    if count > 1:
        raise ToolError("Ambiguous", "old_string occurs %d times in %s; include more surrounding text so it occurs once" % (count, path))
    _write_bytes(path, text.replace(old, new, 1).encode("utf-8"))
    return {"path": path, "replacements": 1}


def op_list_files(rid, args):
    path = resolve(args.get("path") or WORKSPACE)
    recursive = bool(args.get("recursive"))
    if not os.path.exists(path):
        raise ToolError("NotFound", "%s does not exist" % path)
    if not os.path.isdir(path):
        raise ToolError("NotADirectory", "%s is not a directory" % path)
    entries = []
    truncated = False
    try:
        if recursive:
            for dirpath, dirnames, filenames in os.walk(path):
                rel = os.path.relpath(dirpath, path)
                prefix = "" if rel == "." else rel + "/"
                # .git is listed but not descended into: it is noise to an agent.
                for d in dirnames:
                    entries.append(prefix + d + "/")
                dirnames[:] = [d for d in dirnames if d != ".git"]
                entries.extend(prefix + f for f in filenames)
                if len(entries) > MAX_LIST_ENTRIES * 10:
                    truncated = True
                    break
        else:
            with os.scandir(path) as it:
                for e in it:
                    entries.append(e.name + "/" if e.is_dir() else e.name)
    except PermissionError as e:
        raise ToolError("PermissionDenied", str(e))
    entries.sort()
    if len(entries) > MAX_LIST_ENTRIES:
        entries = entries[:MAX_LIST_ENTRIES]
        truncated = True
    return {"path": path, "entries": entries, "truncated": truncated}


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ToolError("NotFound", "%s does not exist" % path)
    except IsADirectoryError:
        raise ToolError("IsADirectory", "%s is a directory; use list_files" % path)
    except PermissionError:
        raise ToolError("PermissionDenied", "permission denied: %s" % path)


def _write_bytes(path, data):
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    except IsADirectoryError:
        raise ToolError("IsADirectory", "%s is a directory" % path)
    except NotADirectoryError:
        raise ToolError("NotADirectory", "a parent of %s is not a directory" % path)
    except PermissionError:
        raise ToolError("PermissionDenied", "permission denied: %s" % path)
    except OSError as e:
        raise ToolError("IOError", "%s: %s" % (path, e.strerror or e))
