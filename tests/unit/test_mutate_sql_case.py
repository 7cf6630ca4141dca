"""``make mutate`` sets aside mutants that only change the letter case of SQL (SQLite
and PostgreSQL ignore it): nothing else may be set aside that way, since the case of an
S3 error code or a log event's name is behaviour (a case-only mutant of "NoSuchUpload"
was once counted as SQL and hid a survivor)."""

from __future__ import annotations

from tests.mutation.mutate import only_letter_case


def _diff(old: str, new: str) -> str:
    return f"--- a.py\n+++ a.py\n@@ -1 +1 @@\n-{old}\n+{new}\n"


def test_the_case_of_sql_is_set_aside() -> None:
    assert only_letter_case(
        _diff('    "SELECT name FROM clients"', '    "select name from clients"')
    )
    assert only_letter_case(
        _diff('    "INSERT INTO parts VALUES ($1)"', '    "insert into parts values ($1)"')
    )


def test_the_case_of_other_strings_is_not() -> None:
    assert not only_letter_case(
        _diff('    if code == "NoSuchUpload":', '    if code == "nosuchupload":')
    )
    assert not only_letter_case(
        _diff('    log.warning("s3_abort_failed")', '    log.warning("S3_ABORT_FAILED")')
    )


def test_a_quoted_sql_literal_is_data() -> None:
    assert not only_letter_case(
        _diff(
            "    \"SELECT 1 FROM t WHERE kind = 'file'\"",
            "    \"select 1 from t where kind = 'FILE'\"",
        )
    )


def test_a_change_beyond_case_is_not_set_aside() -> None:
    assert not only_letter_case(_diff('    "SELECT a FROM t"', '    "SELECT b FROM t"'))
    assert not only_letter_case(_diff('    "SELECT a FROM t"', '    "SELECT a FROM t"'))


def _diff_in(before: str, old: str, new: str, after: str) -> str:
    return f"--- a.py\n+++ a.py\n@@ -1,3 +1,3 @@\n {before}\n-{old}\n+{new}\n {after}\n"


def test_a_piece_of_a_statement_next_to_sql_is_sql() -> None:
    # a column list between the INSERT and its VALUES, and a bind parameter's line
    assert only_letter_case(
        _diff_in(
            '        "INSERT INTO uploads_v4 (client_id, upload_id,"',
            '        " durable_offset, updated_at)"',
            '        " DURABLE_OFFSET, UPDATED_AT)"',
            '        " VALUES ($1, $2, $3, $4)",',
        )
    )
    assert only_letter_case(
        _diff('        " AND generation = $7",', '        " and generation = $7",')
    )


def test_a_string_next_to_no_sql_is_not() -> None:
    assert not only_letter_case(
        _diff_in(
            "    codes = (",
            '        "NoSuchUpload",',
            '        "nosuchupload",',
            "    )",
        )
    )
