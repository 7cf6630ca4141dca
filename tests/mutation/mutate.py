"""``make mutate``: mutation testing of the protocol core and the server's storage and
registry, with mutmut 3, module by module, each against its own fast test selection.

mutmut names a mutant after its file's path (less a leading ``src/``), while the tests
import ``eft_protocol.cksum``, not ``protocol.eft_protocol.cksum``. So each module is
mutated in a staging copy, ``.mutation/<module>/``, laid out as ``src/eft_protocol``,
``src/eft_server`` and ``tests/``; the other packages (client, lab) come from the
installed project as usual. The report (score per module, each survivor's diff) is
written to ``.mutation/report.md`` and printed; docs/TESTING.md keeps the last one
measured, with the survivors explained.

    python -m tests.mutation.mutate [MODULE ...]     (or MUTATE_MODULES=a,b)
    python -m tests.mutation.mutate --sample         the bounded set CI can afford
    python -m tests.mutation.mutate --min-score 90   exit 1 below that score
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutation"
PACKAGES = {
    "eft_protocol": ROOT / "protocol" / "eft_protocol",
    "eft_server": ROOT / "server" / "eft_server",
}

P = "tests/protocol/"
U = "tests/unit/"
V = "tests/v4/"
#: version 4's in-process tests (sans-IO sessions over memory links, the vectors): 5 s in all.
V4_CORE = [
    V + "test_records_unit.py",
    V + "test_v4_client_unit.py",
    V + "test_handshake_unit.py",
    V + "test_v4_server_unit.py",
    V + "test_file_digest_unit.py",
    V + "test_paths_unit.py",
    V + "test_admission_unit.py",
    V + "test_noise_unit.py",
    V + "test_messages.py",
    V + "test_paths.py",
    V + "test_cookies.py",
    V + "test_receive_data.py",
    V + "test_record_engines.py",
    V + "test_registration_lost_v4.py",
    V + "test_rekey.py",
    V + "test_stream.py",
    V + "test_v4_vectors.py",
    V + "test_noise_vectors.py",
    V + "test_noise_interop.py",
    V + "test_v4_stateful.py",
]
#: PACK's (issue 25): the codec and session in-process (1 s), the server's connection over
#: loopback in this process (2 s).
V4_PACK = [V + "test_pack.py", U + "test_connection_v4_pack.py"]
V4_MODULES = (
    "admission",
    "client",
    "file_digest",
    "handshake",
    "paths",
    "records",
    "server",
    "server_effects",
    "server_table",
)
#: The clients' whole runs against an ``app.Server`` in the test's own loop (in-process).
RUN_V3 = "test_a_run_registers_sends_again_after_damage_and_the_next_reconnects"
RUN_V4 = "test_a_run_registers_pins_sends_both_ways_and_the_next_one_reconnects"
#: module -> the tests that exercise it in-process, fast. A test that starts a server
#: process would run the unmutated code (the subprocess imports the installed project).
MODULES: dict[str, list[str]] = {
    "eft_protocol.cksum": [P + "test_cksum_vectors.py", P + "test_vectors.py"],
    "eft_protocol.codes": [P + "test_codes.py", P + "test_vectors.py", P + "test_sessions.py"],
    "eft_protocol.names": [P + "test_names.py", P + "test_sessions.py"],
    "eft_protocol.errors": [
        P + "test_notices_and_errors.py",
        P + "test_refusal_reasons.py",
        P + "test_sessions.py",
    ],
    "eft_protocol.deadlines": [P + "test_deadlines.py"],
    "eft_protocol.upload_attempt": [
        P + "test_upload_attempt.py",
        P + "test_sessions.py",
        P + "test_refusal_reasons.py",
    ],
    "eft_protocol.file_sender": [
        P + "test_file_sender.py",
        P + "test_sessions.py",
        P + "test_client_session_retries.py",
    ],
    "eft_protocol.wire": [
        P + "test_wire_details.py",
        P + "test_wire_token.py",
        P + "test_vectors.py",
        P + "test_wire_roundtrip.py",
        P + "test_refusal_reasons.py",
        P + "test_sessions.py",
    ],
    "eft_protocol.parser": [
        P + "test_parser.py",
        P + "test_wire_details.py",
        P + "test_parser_properties.py",
        P + "test_parser_fuzz.py",
        P + "test_wire_roundtrip.py",
        P + "test_refusal_reasons.py",
        P + "test_sessions.py",
    ],
    "eft_protocol.crypto": [
        P + "test_crypto.py",
        P + "test_crypto_backends.py",
        P + "test_vectors.py",
    ],
    "eft_protocol.registry": [
        P + "test_memory_registry.py",
        P + "test_sessions.py",
        U + "test_sqlite_registry_records.py",
    ],
    "eft_protocol.server_session": [
        P + "test_server_session_unit.py",
        P + "test_registration_lost_unit.py",
        P + "test_connection_lost_unit.py",
        P + "test_sessions.py",
        P + "test_refusal_reasons.py",
        P + "test_registration_lost.py",
        # test_server_session_stateful.py is left out here only (it still runs in
        # `make test`): under it some mutants took one to two minutes each.
    ],
    "eft_protocol.client_session": [
        P + "test_client_session.py",
        P + "test_client_session_token.py",
        P + "test_sessions.py",
        P + "test_refusal_reasons.py",
        P + "test_client_session_retries.py",
    ],
    "eft_protocol.server_table": [
        P + "test_sessions.py",
        P + "test_refusal_reasons.py",
        P + "test_server_session_stateful.py",
        P + "test_registration_lost.py",
    ],
    "eft_protocol.notices": [
        P + "test_notices_and_errors.py",
        P + "test_sessions.py",
        P + "test_refusal_reasons.py",
        *V4_CORE,
    ],
    "eft_protocol.versions": [*V4_CORE, P + "test_sessions.py"],
    "eft_protocol.engines": [
        P + "test_engines_unit.py",
        P + "test_crypto_backends.py",
        V + "test_record_engines.py",
    ],
    "eft_protocol.noise": [*V4_CORE],
    **{"eft_protocol.v4." + name: [*V4_CORE] for name in V4_MODULES},
    # PACK (issue 25): the codec's tests, and the server's session and store in process.
    "eft_protocol.v4.server": [*V4_CORE, *V4_PACK],
    "eft_protocol.v4.pack": [*V4_PACK],
    "eft_server.pack_store": [U + "test_pack_store.py", U + "test_connection_v4_pack.py"],
    "eft_server.storage": [
        U + "test_file_store.py",
        U + "test_file_store_edges.py",
        U + "test_sync_behind.py",
    ],
    "eft_server.sync_behind": [U + "test_sync_behind.py", U + "test_file_store.py"],
    "eft_server.registry": [
        U + "test_registry_reconcile.py",
        U + "test_registry_cache.py",
        U + "test_sqlite_registry_records.py",
        U + "test_registry_revert.py",
        U + "test_registry_writes.py",
    ],
    "eft_server.sqlite_registry": [
        U + "test_registry_cache.py",
        U + "test_sqlite_registry_records.py",
        U + "test_registry_revert.py",
        U + "test_registry_writes.py",
        U + "test_registry_migrations.py",
        U + "test_sqlite_registry_reads.py",
        U + "test_sqlite_registry_writer.py",
        U + "test_sqlite_registry_forget.py",
    ],
    "eft_server.partial_uploads": [
        V + "test_partial_store.py",
        V + "test_partial_uploads.py",
        V + "test_partial_quota_store.py",
        U + "test_partial_uploads_more.py",
        U + "test_sync_behind.py",
        U + "test_partial_store_totals.py",
        U + "test_partial_store_mutants.py",
    ],
    "eft_server.slots": [U + "test_slots.py"],
    "eft_server.client_tree": [
        U + "test_client_tree_edges.py",
        V + "test_client_tree.py",
        U + "test_pack_store.py",
    ],
    "eft_server.file_store": [U + "test_file_store_seam.py"],
    "eft_server.tokens": [U + "test_tokens_edges.py", U + "test_token_store.py"],
    "eft_server.registration_policy": [
        U + "test_registration_policy_edges.py",
        "tests/admin/test_policy_rules.py",
        U + "test_last_seen_writes.py",
    ],
    # The engine in-process on a real PostgreSQL (the other tests in tests/postgres start
    # server processes, which run the unmutated code); see PG_MODULES.
    "eft_server.pg_registry": [
        "tests/postgres/test_pg_registry_mutants.py",
        "tests/postgres/test_pg_engine.py",
    ],
    "eft_server.pg_schema": [
        "tests/postgres/test_pg_registry_mutants.py",
        "tests/postgres/test_pg_engine.py",
    ],
    "eft_server.pg_connect": [
        U + "test_pg_connect.py",
        "tests/postgres/test_pg_registry_mutants.py",
        "tests/postgres/test_pg_engine.py",
    ],
    "eft_server.proxy_header": [U + "test_proxy_header_messages.py", U + "test_proxy_header.py"],
    # With EFT_TEST_S3_ENDPOINT set (tests/s3/conftest.py), the tests/s3 files reuse one
    # SeaweedFS started beforehand instead of starting one per mutant.
    "eft_server.s3_store": [
        U + "test_s3_store_unit.py",
        "tests/s3/test_s3_memory.py",
        "tests/s3/test_s3_part_memory.py",
    ],
    "eft_server.s3_settings": [
        U + "test_s3_settings_unit.py",
        "tests/s3/test_s3_startup.py::test_a_good_url_and_secrets_from_files",
        U + "test_store_choice_and_schema.py",
    ],
    "eft_server.s3_unfinished": [U + "test_s3_unfinished_unit.py"],
    # The uploads shared by replicas: in-process on the real PostgreSQL (PG_MODULES) and
    # SeaweedFS (EFT_TEST_S3_ENDPOINT, as for s3_store). About 2 min a session on a
    # loaded machine: test_s3_shared_fencing.py (the same paths, and 20 s more) is left
    # out but for the holder that never lets go, which only it drives.
    **{
        "eft_server." + name: [
            "tests/s3/test_s3_shared_uploads_unit.py",
            "tests/s3/test_s3_shared_uploads_more.py",
            "tests/s3/test_s3_shared_quota.py",
            "tests/s3/test_s3_shared_resume.py",
            "tests/s3/test_s3_shared_locks.py",
            "tests/s3/test_s3_shared_resume_more.py",
            "tests/s3/test_s3_shared_upload_more.py",
            "tests/s3/test_s3_shared_upload_parts.py",
            "tests/s3/test_s3_shared_fencing.py::test_a_holder_taken_over_writes_nothing_more",
        ]
        for name in ("s3_shared_upload", "s3_shared_resume", "s3_shared_uploads", "s3_shared_sweep")
    },
    "eft_server.store_choice": [U + "test_store_choice_and_schema.py"],
    "eft_server.takeover": [U + "test_takeover.py", U + "test_receive_buffers.py"],
    "eft_server.parser_feed": [U + "test_parser_feed.py", U + "test_receive_buffers.py"],
    # The connection drivers, each run in this process over loopback
    # (tests/unit/in_process_server.py), and the clients' whole runs against a server in
    # the test's own loop; every other test of them starts a server process.
    "eft_server.driver": [
        U + "test_driver.py",
        U + "test_driver_more.py",
        U + "test_connection.py",
        U + "test_connection_v4.py",
        U + "test_transfer.py::" + RUN_V3,
        U + "test_transfer_v4.py::" + RUN_V4,
    ],
    "eft_server.connection": [
        U + "test_connection.py",
        U + "test_connection_more.py",
        U + "test_driver.py",
        U + "test_driver_more.py",
        "tests/check/test_server_steps_unit.py",
        U + "test_transfer.py::" + RUN_V3,
    ],
    "eft_server.connection_v4": [
        U + "test_connection_v4.py",
        U + "test_connection_v4_more.py",
        U + "test_connection_v4_apply.py",
        U + "test_address_key.py",
        U + "test_transfer_v4.py::" + RUN_V4,
    ],
    "eft_server.frame_reader": [
        U + "test_frame_reader.py",
        U + "test_frame_reader_more.py",
        U + "test_plaintext_buffers.py",  # the plaintext pool (issue 22), in-process
        U + "test_receive_buffers.py",
        U + "test_record_buffer_shares.py",
        # the in-process ones (the file's upload test starts a server)
        *(
            V + "test_record_buffers.py::" + name
            for name in (
                "test_a_buffer_is_lent_to_one_reader_at_a_time_and_reused",
                "test_a_waiter_cancelled_after_its_wake_up_passes_the_buffer_on",
                "test_a_waiter_that_gives_up_leaves_no_trace",
                "test_never_more_buffers_lent_at_once_than_the_limit",
            )
        ),
    ],
}
#: Modules whose string literals are SQL, which SQLite and PostgreSQL read the same in any
#: letter case (keywords, unquoted names, PRAGMA values, savepoint names): a survivor that
#: only changes the case of a line with no quoted SQL literal in it (``'...'``, where case
#: matters) is counted apart, as "sql case", and left out of the score.
SQL_CASE_INSENSITIVE = {
    "eft_server.sqlite_registry",
    "eft_server.pg_registry",
    "eft_server.pg_schema",
    "eft_server.s3_shared_uploads",
    "eft_server.s3_shared_upload",
    "eft_server.s3_shared_resume",
    "eft_server.s3_shared_sweep",
}
#: Modules whose tests need PostgreSQL: one cluster is started for their whole run and
#: given to every mutant's pytest session (EFT_TEST_POSTGRES_ROOT, tests/support/postgres.py)
#: instead of an initdb and a start per mutant.
PG_MODULES = {
    "eft_server.pg_registry",
    "eft_server.pg_schema",
    "eft_server.pg_connect",
    "eft_server.s3_shared_uploads",
    "eft_server.s3_shared_upload",
    "eft_server.s3_shared_resume",
    "eft_server.s3_shared_sweep",
}

#: ``make mutate-sample``: small modules whose whole run takes about a minute on two
#: shared cores, together guarding the checksum, the names, the wire format's sizes and
#: the background syncs that make stored files durable.
SAMPLE = [
    "eft_protocol.cksum",
    "eft_protocol.names",
    "eft_protocol.codes",
    "eft_server.sync_behind",
]

STATUSES = ("killed", "survived", "timeout", "no tests", "suspicious", "skipped", "segfault")
SQL_CASE = "sql case"


@dataclass
class Result:
    module: str
    counts: dict[str, int]
    survivors: list[str]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def score(self) -> float:
        """Killed (timeouts count as killed: the mutant hangs the code) over all but the
        SQL letter-case mutants."""
        caught = self.counts.get("killed", 0) + self.counts.get("timeout", 0)
        counted = self.total - self.counts.get(SQL_CASE, 0)
        return 100.0 * caught / counted if counted else 100.0


#: What makes a line SQL: a case-only change of any other string (an S3 error code such
#: as "NoSuchUpload", a log event's name) changes behaviour and is a survivor.
_SQL_WORD = re.compile(
    r"\b(select|insert|update|delete|create|alter|drop|where|from|values|returning|"
    r"begin|commit|pragma|set|join|order by|group by|on conflict|listen|notify)\b"
    r"|\$\d+",  # a bind parameter ("AND generation = $3")
    re.IGNORECASE,
)
#: A line that is one string literal and nothing else (a piece of a longer statement).
_STRING_PIECE = re.compile(r'\s*"[^"]*",?\s*')


def only_letter_case(diff: str) -> bool:
    """Whether a mutant's diff changes nothing but the letter case of SQL lines, none of
    which holds a quoted SQL literal (``'...'``: its case is data)."""
    lines = diff.splitlines()
    removed = [line[1:] for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
    if not removed or len(removed) != len(added) or removed == added:
        return False
    pairs = zip(removed, added, strict=True)
    in_statement = _between_sql(lines)
    return all(
        old.lower() == new.lower()
        and "'" not in old
        and (
            _SQL_WORD.search(old) is not None
            or (in_statement and _STRING_PIECE.fullmatch(old) is not None)
        )
        for old, new in pairs
    )


def _between_sql(lines: list[str]) -> bool:
    """Whether the changed lines sit next to SQL in the diff (the line just before them
    or just after): a statement split over several string literals has pieces with no
    SQL word of their own, such as a column list."""
    changed = [
        i for i, line in enumerate(lines) if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]
    if not changed:
        return False
    around = [lines[i] for i in (changed[0] - 1, changed[-1] + 1) if 0 <= i < len(lines)]
    return any(line.startswith(" ") and _SQL_WORD.search(line) for line in around)


def source_file(module: str) -> Path:
    package, _, rest = module.partition(".")
    return PACKAGES[package] / (rest.replace(".", "/") + ".py")


def stage(module: str) -> Path:
    """A fresh staging copy for ``module``; the mutants of an earlier run are dropped."""
    place = WORK / module
    shutil.rmtree(place, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for package, path in PACKAGES.items():
        shutil.copytree(path, place / "src" / package, ignore=ignore)
    shutil.copytree(ROOT / "tests", place / "tests", ignore=ignore)
    # Some tests check the docs against the code (test_pack.py: the vectors' table);
    # mutmut copies them into mutants/ with the tests (also_copy).
    shutil.copytree(ROOT / "docs", place / "docs", ignore=ignore)
    relative = "src/" + module.replace(".", "/") + ".py"
    selection = ", ".join(f'"{test}"' for test in MODULES[module])
    (place / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f'only_mutate = ["{relative}"]\n'
        'also_copy = ["docs"]\n'
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
        "\n[tool.pytest.ini_options]\n"
        'addopts = "--strict-markers"\n'
        'markers = ["slow: end-to-end tests that move large files or many processes"]\n'
    )
    return place


def run_module(module: str, jobs: int) -> Result:
    if not source_file(module).exists():
        raise SystemExit(f"{module}: no such module ({source_file(module)})")
    place = stage(module)
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci", "PYTHONDONTWRITEBYTECODE": "1"}
    # Each mutant's pytest would add its folder times to `make test`'s time ledger.
    env.pop("EFT_LEDGER", None)
    with contextlib.ExitStack() as cleanup:
        if module in PG_MODULES:
            # here only: asyncpg is the optional "postgres" extra
            from tests.support.postgres import SHARED_ROOT, PostgresCluster  # noqa: PLC0415

            if SHARED_ROOT not in env:
                cluster = PostgresCluster.create()
                cleanup.callback(cluster.destroy)
                env[SHARED_ROOT] = str(cluster.start().root)
        return _run_staged(module, place, env, jobs)


def _run_staged(module: str, place: Path, env: dict[str, str], jobs: int) -> Result:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    started = time.monotonic()
    run = subprocess.run(
        [mutmut, "run", "--max-children", str(jobs)],
        cwd=place,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    (place / "run.log").write_text(run.stdout + run.stderr)
    listing = subprocess.run(
        [mutmut, "results", "--all", "true"],
        cwd=place,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    counts: dict[str, int] = {}
    survivors = []
    status_of: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if status not in STATUSES:
            continue
        counts[status] = counts.get(status, 0) + 1
        if status in ("survived", "no tests", "suspicious"):
            survivors.append(name)
            status_of[name] = status
    if not counts:
        tail = (run.stdout + run.stderr)[-2000:]
        raise SystemExit(f"{module}: mutmut ran no mutant; see {place / 'run.log'}\n{tail}")
    diffs = []
    case_only = []
    for name in list(survivors):
        shown = subprocess.run(
            [mutmut, "show", name], cwd=place, env=env, capture_output=True, text=True, check=False
        )
        diff = shown.stdout.strip()
        if module in SQL_CASE_INSENSITIVE and only_letter_case(diff):
            case_only.append(diff)
            counts[status_of[name]] -= 1  # survived, or no tests
            counts[SQL_CASE] = counts.get(SQL_CASE, 0) + 1
            survivors.remove(name)
        else:
            diffs.append(diff)
    (place / "survivors.txt").write_text("\n\n".join(diffs) + "\n")
    if case_only:
        (place / "sql-case.txt").write_text("\n\n".join(case_only) + "\n")
    return Result(module, counts, survivors, time.monotonic() - started)


def report(results: list[Result], commit: str) -> str:
    lines = [
        f"Mutation testing (mutmut 3) at commit {commit}",
        "",
        "| module | mutants | killed | timeout | survived | no tests | sql case | score "
        "| seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        c = r.counts
        lines.append(
            f"| {r.module} | {r.total} | {c.get('killed', 0)} | {c.get('timeout', 0)} | "
            f"{c.get('survived', 0)} | {c.get('no tests', 0)} | {c.get(SQL_CASE, 0)} | "
            f"{r.score:.1f}% | {r.seconds:.0f} |"
        )
    for r in results:
        if r.survivors:
            lines += ["", f"Survivors of {r.module} (diffs in .mutation/{r.module}/survivors.txt):"]
            lines += [f"- {name}" for name in r.survivors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"among: {', '.join(MODULES)}")
    parser.add_argument("--sample", action="store_true", help=f"only {', '.join(SAMPLE)}")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--min-score", type=float, default=0.0, help="fail below this score")
    args = parser.parse_args(argv)
    wanted = args.modules or [m for m in os.environ.get("MUTATE_MODULES", "").split(",") if m]
    if args.sample:
        wanted = SAMPLE
    wanted = [m if m.startswith("eft_") else f"eft_protocol.{m}" for m in wanted] or list(MODULES)
    unknown = [m for m in wanted if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    head = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(head, cwd=ROOT, capture_output=True, text=True, check=False)
    commit_text = commit.stdout.strip()
    if subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT, check=False).returncode:
        commit_text += " (with uncommitted changes)"
    WORK.mkdir(exist_ok=True)
    results = []
    for module in wanted:
        print(f"mutating {module} ...", flush=True)
        result = run_module(module, args.jobs)
        print(f"  {result.score:.1f}% of {result.total} in {result.seconds:.0f} s", flush=True)
        results.append(result)
    text = report(results, commit_text)
    (WORK / "report.md").write_text(text)
    print(text)
    low = [r.module for r in results if r.score < args.min_score]
    if low:
        print(f"below {args.min_score}%: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
