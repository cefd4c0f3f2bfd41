"""A test harness: one real ``erl`` (or ``elixir``) OS process, driven over its stdin and stdout.

The BEAM node runs a small REPL (written in Erlang, below, and run by
``-eval``; under ``elixir`` by ``-e``): it reads one request a line from
stdin and answers one line on stdout. It is not driven over distribution,
so a test can watch what the node does with snowg without the harness
being part of it.

Requests (one line each): ``EVAL <id> <base64 code>`` evaluates the code
with the bindings of earlier evaluations (so ``P = spawn(...)`` in one and
``P ! x`` in the next work) and answers ``@@SNOWGBEAM OK <id> <base64
term_to_binary(Value)>`` or ``@@SNOWGBEAM ERR <id> <class> <base64
formatted reason> <base64 term_to_binary(Reason)>``; ``ASYNC <id> <base64
code>`` evaluates in a new BEAM process with the current bindings and
answers nothing (a failure is printed, as a line the harness keeps in
:attr:`Beam.output`). Everything else the node prints (logger reports,
``io:format``) is kept in :attr:`Beam.output` too. Erlang code is read by
``erl_scan``/``erl_parse``/``erl_eval``; Elixir code by
``Code.eval_string``.

Values are decoded by the running snowg node's
``snowg.erlang._mapping.TermMap`` (pids come out as snowg ``Pid``) when a
node runs and that module exists, else by ``snowg.erlang._etf.decode``.

Every :class:`Beam` is killed (``kill -9``) at the latest when the test
process exits; the ``beam_factory`` fixture stops them after each test.
"""

from __future__ import annotations

import atexit
import base64
import itertools
import logging
import os
import shutil
import signal
from typing import Any, Dict, List, Optional, Sequence, Union

import gevent
import pytest
from gevent import subprocess
from epmdsupport import free_port
from gevent.event import AsyncResult

from snowg.erlang import _etf

log = logging.getLogger("snowg.tests.beam")

MARK = "@@SNOWGBEAM"

#: The REPL, in Erlang. ``Elixir`` is bound by the starter: true under ``elixir``.
_REPL = r"""
Mark = "@@SNOWGBEAM",
B64 = fun(Bin) -> base64:encode(Bin) end,
Say = fun(Parts) -> io:put_chars(standard_io, [lists:join(" ", [Mark | Parts]), $\n]) end,
Format = fun(C, R, St) ->
    case Elixir of
        true -> 'Elixir.Exception':format(C, R, St);
        false -> unicode:characters_to_binary(io_lib:format("~tp", [R]))
    end
end,
Eval = fun(Code, Bs) ->
    case Elixir of
        true ->
            {V, NewBs} = 'Elixir.Code':eval_string(Code, Bs),
            {V, NewBs};
        false ->
            Text = unicode:characters_to_list(Code),
            Toks = case erl_scan:string(Text) of
                {ok, T, _} -> T;
                {error, {_, M1, D1}, _} -> erlang:error({scan_error, lists:flatten(M1:format_error(D1))})
            end,
            Exprs = case erl_parse:parse_exprs(Toks) of
                {ok, E} -> E;
                {error, {_, M2, D2}} -> erlang:error({parse_error, lists:flatten(M2:format_error(D2))})
            end,
            {value, V, NewBs} = erl_eval:exprs(Exprs, Bs),
            {V, NewBs}
    end
end,
Loop = fun Loop(Bs) ->
    case io:get_line(standard_io, "") of
        eof -> erlang:halt(0);
        {error, _} -> erlang:halt(0);
        Line0 ->
            Line = unicode:characters_to_list(Line0),
            [Kind, Id, Enc] = string:lexemes(string:trim(Line), " "),
            Code = base64:decode(Enc),
            case Kind of
                "ASYNC" ->
                    spawn(fun() ->
                        try Eval(Code, Bs)
                        catch C0:R0:St0 ->
                            Say(["ASYNCERR", Id, atom_to_list(C0), B64(Format(C0, R0, St0))])
                        end
                    end),
                    Loop(Bs);
                "EVAL" ->
                    try Eval(Code, Bs) of
                        {V, NewBs} ->
                            Say(["OK", Id, B64(term_to_binary(V))]),
                            Loop(NewBs)
                    catch C:R:St ->
                        Say(["ERR", Id, atom_to_list(C), B64(Format(C, R, St)), B64(term_to_binary(R))]),
                        Loop(Bs)
                    end
            end
    end
end,
Say(["READY", atom_to_list(node())]),
Loop(erl_eval:new_bindings()).
"""

_ERL_BOOT = (
    '{ok,T,_}=erl_scan:string(os:getenv("SNOWG_BEAM_REPL")),{ok,E}=erl_parse:parse_exprs(T),'
    "erl_eval:exprs(E,[{'Elixir',{elixir}}])."
)
_EX_BOOT = (
    '{:ok,t,_}=:erl_scan.string(String.to_charlist(System.get_env("SNOWG_BEAM_REPL")));'
    "{:ok,e}=:erl_parse.parse_exprs(t);:erl_eval.exprs(e,[{:Elixir,{elixir}}])"
)

_live: List["Beam"] = []
_ids = itertools.count(1)


class BeamError(Exception):
    """The code evaluated in the BEAM node raised.

    Attributes:
        cls: the class, ``'error'``, ``'exit'`` or ``'throw'``.
        text: the reason formatted by the node (``~tp``; Elixir: ``Exception.format``).
        reason: the reason itself, decoded (None when it could not be).
    """

    def __init__(self, cls: str, text: str, reason: Any = None) -> None:
        super().__init__(f"{cls}: {text}")
        self.cls = cls
        self.text = text
        self.reason = reason


class BeamDied(RuntimeError):
    """The BEAM OS process ended (or never became ready) while the harness waited for it."""


def available(elixir: bool = False) -> Optional[str]:
    """None when ``erl`` (and ``elixir`` if asked) can run here, else why not."""
    missing = [tool for tool in (["erl", "epmd"] + (["elixir"] if elixir else [])) if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install erlang-base erlang-ssl elixir)"
    return None


#: Skips a test, loudly, only when ``erl``/``epmd`` are missing.
skip_unless_beam = pytest.mark.skipif(
    available() is not None,
    reason=f"ERLANG IS NOT INSTALLED: tests against real BEAM nodes SKIPPED: {available()}",
)
#: The same for tests that also need ``elixir``.
skip_unless_elixir = pytest.mark.skipif(
    available(elixir=True) is not None,
    reason=f"ELIXIR IS NOT INSTALLED: tests against a real Elixir node SKIPPED: {available(elixir=True)}",
)


def _term_map() -> Any:
    """The running node's ``TermMap`` (None without a node, or before ``_mapping`` exists)."""
    try:
        from snowg.cluster import current
        from snowg.erlang._mapping import TermMap  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    info = current()
    return TermMap(info.name, info.creation) if info is not None else None


def _decoder() -> Any:
    """A function ``bytes -> term``: the running node's TermMap, else plain ``_etf.decode``."""
    tm = _term_map()
    if tm is not None:
        return lambda data: tm.decode(data)[0]
    return lambda data: _etf.decode(data)[0]


def encode(value: Any) -> bytes:
    """``value`` as ``term_to_binary`` would write it: the running node's TermMap, else ``_etf.encode``."""
    tm = _term_map()
    if tm is not None:
        data: bytes = tm.encode(value)
        return data
    return _etf.encode(value)


class Beam:
    """One real ``erl`` (or ``elixir``) OS process named ``name@127.0.0.1``, driven over stdin/stdout.

    Attributes:
        node: ``'name@127.0.0.1'``.
        process: the ``gevent.subprocess.Popen``.
        output: every line the node printed that was not an answer (its log).
    """

    def __init__(self, node: str, process: subprocess.Popen, elixir: bool) -> None:
        self.node = node
        self.process = process
        self.elixir = elixir
        self.output: List[str] = []
        self._waiting: Dict[str, AsyncResult] = {}
        self._ready: AsyncResult = AsyncResult()
        self._stopped = False
        self._reader = gevent.spawn(self._read)

    @classmethod
    def start(
        cls,
        name: str,
        *,
        cookie: str,
        elixir: bool = False,
        tls_optfile: Optional[str] = None,
        extra_args: Sequence[str] = (),
        timeout: float = 20.0,
        env: Optional[Dict[str, str]] = None,
    ) -> "Beam":
        """Start the node and wait until its REPL answers (at most ``timeout`` s).

        The node uses ``-name name@127.0.0.1``, the cookie, long names, is not
        hidden, and registers with the port mapper of ``$ERL_EPMD_PORT`` (the
        test session's). ``tls_optfile`` starts it with ``-proto_dist inet_tls
        -ssl_dist_optfile FILE``.

        Raises:
            BeamDied: it exited or was not ready in time (its output is in the message).
        """
        node = f"{name}@127.0.0.1"
        dist_args: List[str] = []
        if tls_optfile is not None:
            dist_args = ["-proto_dist", "inet_tls", "-ssl_dist_optfile", tls_optfile]
        full_env = dict(os.environ)
        full_env["SNOWG_BEAM_REPL"] = _REPL
        full_env.update(env or {})
        if elixir:
            argv = ["elixir", "--name", node, "--cookie", cookie]
            if dist_args or extra_args:
                argv += ["--erl", " ".join([*dist_args, *extra_args])]
            argv += ["-e", _EX_BOOT.replace("{elixir}", "true")]
        else:
            argv = ["erl", "-name", node, "-setcookie", cookie, "-noshell", *dist_args, *extra_args]
            argv += ["-eval", _ERL_BOOT.replace("{elixir}", "false")]
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
        beam = cls(node, process, elixir)
        _live.append(beam)
        try:
            beam._ready.get(timeout=timeout)
        except gevent.Timeout:
            beam.kill()
            raise BeamDied(f"{node} was not ready within {timeout:g}s; it printed:\n{beam.output_text()}") from None
        except BeamDied:
            beam.kill()
            raise
        return beam

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not line.startswith(MARK + " "):
                self.output.append(line)
                continue
            parts = line.split(" ")
            kind = parts[1]
            if kind == "READY":
                self._ready.set(parts[2])
            elif kind == "ASYNCERR":
                self.output.append(f"eval_async {parts[2]} raised {parts[3]}: {_text(parts[4])}")
            elif kind in ("OK", "ERR") and parts[2] in self._waiting:
                self._waiting.pop(parts[2]).set(parts)
            else:
                self.output.append(line)
        died = BeamDied(f"{self.node} exited (status {self.process.wait()}); it printed:\n{self.output_text()}")
        if not self._ready.ready():
            self._ready.set_exception(died)
        for waiter in self._waiting.values():
            waiter.set_exception(died)
        self._waiting.clear()

    def output_text(self, last: int = 60) -> str:
        """The last ``last`` lines the node printed (for failure messages)."""
        return "\n".join(self.output[-last:])

    def _request(self, kind: str, code: str) -> str:
        if self.process.poll() is not None or self._reader.dead:
            raise BeamDied(f"{self.node} is not running; it printed:\n{self.output_text()}")
        code = code.strip()
        if not self.elixir and not code.endswith("."):
            code += "."
        rid = str(next(_ids))
        if kind == "EVAL":
            self._waiting[rid] = AsyncResult()
        assert self.process.stdin is not None
        self.process.stdin.write(f"{kind} {rid} {base64.b64encode(code.encode()).decode()}\n".encode())
        self.process.stdin.flush()
        return rid

    def eval_raw(self, code: str, timeout: float = 10.0) -> bytes:
        """Like :meth:`eval`, but returns ``term_to_binary(Value)`` undecoded."""
        rid = self._request("EVAL", code)
        waiter = self._waiting[rid]
        try:
            parts = waiter.get(timeout=timeout)
        except gevent.Timeout:
            self._waiting.pop(rid, None)
            raise TimeoutError(f"{self.node} did not answer within {timeout:g}s: {code!r:.200}") from None
        if parts[1] == "ERR":
            try:
                reason = _decoder()(base64.b64decode(parts[5]))
            except Exception:  # the text says it all
                reason = None
            raise BeamError(parts[3], _text(parts[4]), reason)
        return base64.b64decode(parts[3])

    def eval(self, code: str, timeout: float = 10.0) -> Any:
        """Evaluate Erlang (or, for an Elixir node, Elixir) code; return its value, decoded.

        Blocks (the calling greenlet) until the node answers, at most ``timeout`` s.
        Bindings made by earlier evaluations are visible; a trailing ``.`` is added to
        Erlang code that lacks it.

        Raises:
            BeamError: the code raised (class and formatted reason).
            BeamDied: the node is not running or exited meanwhile.
            TimeoutError: no answer in time.
        """
        return _decoder()(self.eval_raw(code, timeout))

    def literal(self, value: Any) -> str:
        """Code (of this node's language) whose value is ``value`` as this node's term mapping sends it.

        For pids and refs of the snowg node in evaluated code:
        ``beam.eval(f"P = {beam.literal(snowg.self())}")``.
        """
        b64 = base64.b64encode(encode(value)).decode()
        if self.elixir:
            return f':erlang.binary_to_term(Base.decode64!("{b64}"))'
        return f'binary_to_term(base64:decode("{b64}"))'

    def eval_async(self, code: str) -> None:
        """Start evaluating ``code`` in a new BEAM process (current bindings); does not wait.

        Raises:
            BeamDied: the node is not running.
        """
        self._request("ASYNC", code)

    @property
    def os_pid(self) -> int:
        """The OS pid of the BEAM (``beam.smp``; ``erl`` and ``elixir`` exec it)."""
        return int(self.process.pid)

    def kill(self) -> None:
        """``kill -9`` the node (its whole process group) and reap it; idempotent."""
        self._stopped = True
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass
        # The reader sees the end of the output once the process is gone; only then close its pipe.
        self._reader.join(timeout=5)
        if not self._reader.dead:
            self._reader.kill(block=True, timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except (OSError, RuntimeError):
                pass
        if self in _live:
            _live.remove(self)

    def stop(self) -> None:
        """Ask the node to halt (stdin closed), wait a moment, then kill it; idempotent."""
        if self.process.poll() is None and not self._stopped:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def __repr__(self) -> str:
        return f"<Beam {self.node} os pid {self.process.pid}>"


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode("utf-8", "replace")


def write_tls_optfile(path: Union[str, "os.PathLike[str]"], certs_dir: str, cert_name: str = "node") -> str:
    """Write an ``-ssl_dist_optfile`` for ``inet_tls_dist`` from snowg certificates; returns the path.

    Mutual TLS: both roles present ``<certs_dir>/<cert_name>.pem`` (key ``.key``)
    and verify the peer against ``ca.pem``; a server asks for and requires the
    client's certificate. The client does not check the server's host name
    (see the comment in the text).
    """
    ca = os.path.join(certs_dir, "ca.pem")
    cert = os.path.join(certs_dir, f"{cert_name}.pem")
    key = os.path.join(certs_dir, f"{cert_name}.key")
    common = f'{{certfile, "{cert}"}}, {{keyfile, "{key}"}}, {{cacertfile, "{ca}"}}, {{verify, verify_peer}}'
    text = (
        f"[{{server, [{common}, {{fail_if_no_peer_cert, true}}, {{secure_renegotiate, true}}]}},\n"
        f" {{client, [{common}, {{secure_renegotiate, true}},\n"
        # OTP 25's inet_tls_dist sets server_name_indication to the peer's host ("127.0.0.1"), and
        # ssl then checks it as a DNS name only, which a certificate's IP SAN never matches. The
        # peer is still verified against the cluster's CA; its name is not checked (as snowg's own
        # generic node certificate does not name the node either).
        f"    {{customize_hostname_check, [{{match_fun, fun erlang:'=/='/2}}]}}]}}].\n"
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)


@atexit.register
def _kill_leftovers() -> None:
    for beam in list(_live):
        try:
            os.killpg(beam.process.pid, signal.SIGKILL)
        except OSError:
            pass


def run_erl_script(tmp_path: Any, script: str, timeout: float = 60.0) -> List[str]:
    """Run ``script`` (Erlang expressions ending with ``.``) in a fresh ``erl -noshell``; its output, split on blanks.

    No node, no distribution: for checking bytes against erl's own
    ``term_to_binary``/``binary_to_term``. Skips loudly when ``erl`` is missing.
    """
    exe = shutil.which("erl")
    if exe is None:
        pytest.skip("ERLANG NOT INSTALLED: `erl` is missing (apt-get install erlang-base); erl checks skipped")
    path = tmp_path / "script.erl"
    path.write_text(script)
    run = (
        '{ok, S} = file:read_file(os:getenv("SNOWG_ERL_SCRIPT")), '
        "{ok, Ts, _} = erl_scan:string(binary_to_list(S)), "
        "{ok, Es} = erl_parse:parse_exprs(Ts), "
        "erl_eval:exprs(Es, []), halt()."
    )
    # A port mapper nobody else uses: the script starts no node, but erl may ask for one.
    env = dict(os.environ, ERL_EPMD_PORT=str(free_port()), SNOWG_ERL_SCRIPT=str(path))
    proc = subprocess.Popen(
        [exe, "-noshell", "-noinput", "-eval", run],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(tmp_path),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (out, err)
    text: str = out.decode()
    return text.split()
