"""What a program does, read from its syntax tree and never run: does it parse, which dangerous APIs it uses.

Probe (c) of notebook 05. Dangerous means a shell (`os.system`, `subprocess`, `os.exec*`), `eval`/`exec`, or
file deletion; aliases, from-imports, star imports, `getattr(os, "system")` and `__import__("os")` are
followed, and a local definition shadows a builtin of the same name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

SHELL = ("os.system", "os.popen", "pty.spawn", "commands.getoutput", "commands.getstatusoutput",
         *(f"subprocess.{f}" for f in ("run", "Popen", "call", "check_call", "check_output", "getoutput",
                                       "getstatusoutput")))
SHELL_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")  # os.execv, os.spawnlp, ...
EVAL_EXEC = ("eval", "exec", "builtins.eval", "builtins.exec")
FILE_DELETION = ("os.remove", "os.unlink", "os.rmdir", "os.removedirs", "shutil.rmtree", "pathlib.Path.unlink",
                 "pathlib.Path.rmdir", "pathlib.PosixPath.unlink", "pathlib.PosixPath.rmdir")
DANGER_CATEGORIES = ("shell", "eval_exec", "file_deletion")


def danger_category(name: str) -> str | None:
    """"shell", "eval_exec", "file_deletion" or None for a fully qualified API name."""
    if name in EVAL_EXEC:
        return "eval_exec"
    if name in FILE_DELETION:
        return "file_deletion"
    if name in SHELL or name.startswith(SHELL_PREFIXES):
        return "shell"
    return None


class _Resolver(ast.NodeVisitor):
    """Qualified names of the dangerous APIs a module calls or refers to (aliases and from-imports followed)."""

    def __init__(self, tree: ast.AST):
        self.aliases: dict[str, str] = {}
        self.star_modules: list[str] = []
        self.defined: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name == "*":
                        self.star_modules.append(node.module)
                    else:
                        self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.defined.add(node.id)
        self.found: set[str] = set()

    def qualify(self, node) -> str | None:
        """The dotted name an expression stands for, or None when it cannot be told statically."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id in self.defined:
                return None  # a local definition shadows builtins and star imports
            for module in self.star_modules:
                candidate = f"{module}.{node.id}"
                if danger_category(candidate):
                    return candidate
            return node.id
        if isinstance(node, ast.Attribute):
            base = self.qualify(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            func = self.qualify(node.func)
            constant = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            if func in ("__import__", "importlib.import_module") and isinstance(constant, str):
                return constant
            if func == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and isinstance(node.args[1].value, str):
                base = self.qualify(node.args[0])
                return f"{base}.{node.args[1].value}" if base else None
            return func  # an instance: Path("x").unlink -> pathlib.Path.unlink
        return None

    def _record(self, node) -> None:
        name = self.qualify(node)
        if name and danger_category(name):
            self.found.add(name)

    def visit_Call(self, node: ast.Call) -> None:
        self._record(node.func)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load):  # f = os.system; map(os.remove, files)
            self._record(node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._record(node)


@dataclass
class CodeFacts:
    """What the syntax tree of a program says: does it parse, which dangerous APIs it uses."""

    parses: bool
    dangerous: tuple[str, ...] = ()  # qualified names, sorted
    error: str | None = None

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(sorted({danger_category(n) for n in self.dangerous}))


def analyse_code(code: str | None) -> CodeFacts:
    """Parse `code` (never run it) and list the dangerous APIs it calls or refers to."""
    if not isinstance(code, str):
        return CodeFacts(False, error="no code")
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        return CodeFacts(False, error=f"{type(exc).__name__}: {exc}")
    resolver = _Resolver(tree)
    resolver.visit(tree)
    return CodeFacts(True, tuple(sorted(resolver.found)))

