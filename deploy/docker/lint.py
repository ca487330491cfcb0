"""A Dockerfile linter for the rules that matter to these images (hadolint's ideas, without its binary).

    python deploy/docker/lint.py deploy/docker/*.Dockerfile

Each finding is `<file>:<line>: <code> <message>`; the exit status is 1 when there is one. Rules:

  RF001 every FROM names a pinned image: a tag other than `latest`, or a digest (or an earlier stage)
  RF002 at least two stages (build tools stay out of the final image)
  RF003 the final stage switches to a user other than root (USER, by name or uid)
  RF004 the final stage has a HEALTHCHECK (and not HEALTHCHECK NONE)
  RF005 no ADD of a URL (fetch in a RUN with a checksum, or COPY)
  RF006 no ADD for local files: COPY says what it does
  RF007 apt-get install with -y and --no-install-recommends
  RF008 apt lists cleaned in the same RUN as the install (rm -rf /var/lib/apt/lists/*), or every package pinned
  RF009 COPY in the final stage sets its owner (--chown): what the process may write is a decision
  RF010 pip install without a cache in the layer (--no-cache-dir, or PIP_NO_CACHE_DIR set)
  RF011 CMD, ENTRYPOINT and HEALTHCHECK CMD in exec (JSON) form, so signals reach the process
  RF012 WORKDIR is an absolute path
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

RULES = {
    "RF001": "FROM must name a pinned image (a tag other than 'latest', or a digest)",
    "RF002": "use a multi-stage build (at least two FROM)",
    "RF003": "the final stage must run as a non-root USER",
    "RF004": "the final stage must declare a HEALTHCHECK",
    "RF005": "do not ADD a URL",
    "RF006": "use COPY, not ADD, for local files",
    "RF007": "apt-get install needs -y and --no-install-recommends",
    "RF008": "remove /var/lib/apt/lists/* in the RUN that installs, or pin every package (name=version)",
    "RF009": "COPY in the final stage needs --chown",
    "RF010": "pip install needs --no-cache-dir (or PIP_NO_CACHE_DIR)",
    "RF011": "use the exec (JSON) form",
    "RF012": "WORKDIR must be an absolute path",
}


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str
    flags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code} {self.message}"


def parse(text: str) -> list[Instruction]:
    """Instructions with their first line, continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        joined = " ".join(part.strip() for part in buf).strip()
        buf = []
        keyword, _, rest = joined.partition(" ")
        out.append(_with_flags(Instruction(start, keyword.upper(), rest.strip())))
    if buf:
        joined = " ".join(part.strip() for part in buf).strip()
        keyword, _, rest = joined.partition(" ")
        out.append(_with_flags(Instruction(start, keyword.upper(), rest.strip())))
    return out


def _with_flags(ins: Instruction) -> Instruction:
    if ins.keyword not in ("FROM", "COPY", "ADD", "RUN", "HEALTHCHECK"):
        return ins
    rest = ins.args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        ins.flags[name] = value
        rest = rest.strip()
    ins.args = rest
    return ins


def _stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            stages.append([ins])
        elif stages:
            stages[-1].append(ins)
    return stages


def _global_args(instructions: list[Instruction]) -> dict[str, str]:
    out = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            out[name.strip()] = default.strip().strip("\"'")
    return out


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return False
    tag = name.split(":", 1)[1]
    return bool(tag) and tag != "latest" and "$" not in tag


def _is_exec_form(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, list) and all(isinstance(v, str) for v in value) and bool(value)


def _shell_commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN line, split on && ; || and |."""
    parts = re.split(r"&&|\|\||;|\|", run)
    out = []
    for p in parts:
        try:
            words = shlex.split(p)
        except ValueError:
            words = p.split()
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
            words = words[1:]  # VAR=value before the command
        if words:
            out.append(words)
    return out


def lint_text(text: str, path: str = "Dockerfile") -> list[Finding]:
    instructions = parse(text)
    findings: list[Finding] = []

    def add(line: int, code: str) -> None:
        findings.append(Finding(path, line, code, RULES[code]))

    args = _global_args(instructions)
    stages = _stages(instructions)
    names: set[str] = set()
    for stage in stages:
        src = stage[0]
        words = src.args.split()
        image = _substitute(words[0], args) if words else ""
        if image.lower() != "scratch" and image not in names and not _pinned(image):
            add(src.line, "RF001")
        if len(words) >= 3 and words[1].upper() == "AS":
            names.add(words[2])
    if len(stages) < 2:
        add(stages[0][0].line if stages else 1, "RF002")

    env_no_cache = any(i.keyword == "ENV" and re.search(r"\bPIP_NO_CACHE_DIR=(1|true|yes|on)\b", i.args, re.I)
                       for i in instructions)
    for ins in instructions:
        if ins.keyword == "ADD":
            if re.search(r"(^|\s)(https?|ftp)://", ins.args):
                add(ins.line, "RF005")
            else:
                add(ins.line, "RF006")
        elif ins.keyword in ("CMD", "ENTRYPOINT") and not _is_exec_form(ins.args):
            add(ins.line, "RF011")
        elif ins.keyword == "WORKDIR" and not (ins.args.startswith("/") or ins.args.startswith("$")):
            add(ins.line, "RF012")
        elif ins.keyword == "RUN":
            commands = _shell_commands(ins.args)
            installs = [c for c in commands if c[:2] == ["apt-get", "install"] or
                        (len(c) > 2 and c[0] == "apt-get" and "install" in c[1:])]
            for c in installs:
                if ("-y" not in c and "--yes" not in c and "-qq" not in c) or "--no-install-recommends" not in c:
                    add(ins.line, "RF007")
            if installs:
                packages = [w for c in installs for w in c[c.index("install") + 1:] if not w.startswith("-")]
                cleaned = re.search(r"rm\s+-(rf|fr)\s+/var/lib/apt/lists/?\*?", ins.args)
                if not cleaned and not all("=" in p for p in packages):
                    add(ins.line, "RF008")
            for c in commands:
                if ("pip" in c[0].rsplit("/", 1)[-1] and "install" in c[1:]) or c[:4] == ["python", "-m", "pip",
                                                                                         "install"]:
                    if "--no-cache-dir" not in c and not env_no_cache:
                        add(ins.line, "RF010")

    if stages:
        final = stages[-1]
        users = [i for i in final if i.keyword == "USER"]
        if not users or users[-1].args.split(":")[0] in ("root", "0"):
            add(users[-1].line if users else final[0].line, "RF003")
        checks = [i for i in final if i.keyword == "HEALTHCHECK"]
        if not checks or checks[-1].args.upper().startswith("NONE"):
            add(checks[-1].line if checks else final[0].line, "RF004")
        for ins in checks:
            rest = ins.args
            if rest.upper().startswith("CMD"):
                if not _is_exec_form(rest[3:].strip()):
                    add(ins.line, "RF011")
        for ins in final:
            if ins.keyword == "COPY" and "chown" not in ins.flags:
                add(ins.line, "RF009")
    return sorted(findings, key=lambda f: (f.line, f.code))


def lint_file(path: Path) -> list[Finding]:
    return lint_text(path.read_text(), str(path))


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: lint.py DOCKERFILE...", file=sys.stderr)
        return 2
    findings = [f for p in argv for f in lint_file(Path(p))]
    for f in findings:
        print(f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
