from __future__ import annotations

import pickle

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import (
    ConflictError,
    OperationTimeoutError,
    PermissionDeniedError,
    UnavailableError,
    ValidationError,
    is_transient,
)
from utils.db import (
    CheckViolationError,
    ConstraintViolationError,
    Database,
    DatabaseError,
    DatabaseUnavailableError,
    DataError,
    ExclusionViolationError,
    ForeignKeyViolationError,
    NotNullViolationError,
    UniqueViolationError,
)
from utils.db._dsn import redact_dsn
from utils.db._translate import translate
from utils.db.transient import classify_psycopg_error

SECRET_ROW = "ann@example.com"


@pytest.fixture
def schema(db: Database) -> object:
    db.execute("drop table if exists err_child, err_parent, err_booking")
    db.execute("create extension if not exists btree_gist")
    db.execute(
        "create table err_parent (id int primary key, email text unique, price int check (price > 0) constraint price_positive_chk check (price < 1000000), name text not null default 'x')"
    )
    db.execute(
        "create table err_child (id int primary key, parent int constraint child_parent_fk references err_parent (id))"
    )
    db.execute(
        "create table err_booking (room int, during int4range, exclude using gist (room with =, during with &&))"
    )
    db.execute("insert into err_parent (id, email, price) values (1, %s, 10)", [SECRET_ROW])
    yield None
    db.execute("drop table if exists err_child, err_parent, err_booking")


def _raised(db: Database, sql: str, params: object = None) -> DatabaseError:
    with pytest.raises(DatabaseError) as caught:
        db.execute(sql, params)  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error.__cause__, psycopg.Error)
    assert SECRET_ROW not in str(error)
    assert SECRET_ROW not in repr(error)
    return error


def test_translation_table(db: Database, schema: object) -> None:
    unique = _raised(
        db, "insert into err_parent (id, email, price) values (2, %s, 5)", [SECRET_ROW]
    )
    assert isinstance(unique, UniqueViolationError)
    assert isinstance(unique, ConflictError)
    assert unique.details["constraint"] == "err_parent_email_key"
    assert unique.details["table"] == "err_parent"
    assert unique.details["sqlstate"] == "23505"
    fk = _raised(db, "insert into err_child values (1, 42)")
    assert isinstance(fk, ForeignKeyViolationError)
    assert isinstance(fk, ValidationError)
    assert fk.details["constraint"] == "child_parent_fk"
    check = _raised(db, "insert into err_parent (id, price) values (3, -1)")
    assert isinstance(check, CheckViolationError)
    assert check.details["constraint"] == "err_parent_price_check"
    null = _raised(db, "insert into err_parent (id, price, name) values (4, 1, null)")
    assert isinstance(null, NotNullViolationError)
    assert null.details["column"] == "name"
    db.execute("insert into err_booking values (1, '[1,5)')")
    excl = _raised(db, "insert into err_booking values (1, '[2,3)')")
    assert isinstance(excl, ExclusionViolationError)
    assert isinstance(excl, ConflictError)
    data = _raised(db, "select %s::int", [SECRET_ROW])
    assert isinstance(data, DataError)
    assert data.details["sqlstate"] == "22P02"
    syntax = _raised(db, "selec 1")
    assert type(syntax) is DatabaseError
    assert "syntax error" in str(syntax)
    assert not is_transient(unique)
    assert not is_transient(syntax)


def test_other_integrity_class(db: Database) -> None:
    error = translate(psycopg.errors.RestrictViolation("restrict"), operation="delete")
    assert type(error) is ConstraintViolationError


def _as_nobody(db: Database) -> None:
    with db.transaction():
        db.execute("set local role utils_db_nobody")
        db.execute("create table pg_catalog.nope (x int)")


def test_permission_and_authentication(db: Database) -> None:
    db.execute("drop role if exists utils_db_nobody")
    db.execute("create role utils_db_nobody")
    try:
        with pytest.raises(PermissionDeniedError):
            _as_nobody(db)
    finally:
        db.execute("drop role if exists utils_db_nobody")
    auth = translate(
        psycopg.errors.InvalidPassword("password authentication failed"), operation="connect"
    )
    assert isinstance(auth, PermissionDeniedError)


def test_connection_failure_is_unavailable_and_hides_password() -> None:
    free = "postgresql://ann:hunter2@127.0.0.1:1/x?connect_timeout=1"
    with Database(free, timeout=0.5) as db:
        assert "hunter2" not in repr(db)
        with pytest.raises(DatabaseUnavailableError) as caught:
            db.fetch_val("select 1")
        assert "hunter2" not in str(caught.value)
        assert "hunter2" not in repr(caught.value.details)
        assert caught.value.retryable


def test_raw_psycopg_classifier(utils_postgres_url: str) -> None:
    with (
        psycopg.connect(utils_postgres_url, autocommit=True) as conn,
        pytest.raises(psycopg.Error) as caught,
    ):
        conn.execute("select 1/0")
    assert classify_psycopg_error(caught.value) is False
    assert is_transient(caught.value) is False
    with pytest.raises(psycopg.OperationalError) as lost:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/x", connect_timeout=1)
    assert classify_psycopg_error(lost.value) is True
    assert is_transient(lost.value) is True
    assert classify_psycopg_error(psycopg.errors.SerializationFailure("x")) is True
    assert classify_psycopg_error(psycopg.errors.AdminShutdown("x")) is True
    assert classify_psycopg_error(psycopg.errors.UniqueViolation("x")) is False
    assert classify_psycopg_error(KeyError("x")) is None


def test_meaning_classes() -> None:
    assert issubclass(DatabaseUnavailableError, UnavailableError)
    from utils.db import LockTimeoutError, QueryTimeoutError

    assert issubclass(QueryTimeoutError, OperationTimeoutError)
    assert issubclass(LockTimeoutError, OperationTimeoutError)


def test_errors_pickle() -> None:
    error = UniqueViolationError("unique constraint 'x' violated", details={"constraint": "x"})
    copy = pickle.loads(pickle.dumps(error))
    assert copy.details == {"constraint": "x"}
    assert type(copy) is UniqueViolationError


@given(
    user=st.text(alphabet="abcdefghijklmnop", min_size=1, max_size=8),
    password=st.text(alphabet="ABCDEFGHIJKLMNOP#!$%", min_size=4, max_size=16),
    quoted=st.booleans(),
)
def test_redaction_never_shows_the_password(user: str, password: str, quoted: bool) -> None:
    url = f"postgresql://{user}:{password}@db.example:5432/app"
    assert password not in redact_dsn(url)
    value = f"'{password} x'" if quoted else password
    keyvalue = f"host=db user={user} password={value} dbname=app"
    assert password not in redact_dsn(keyvalue)
    assert "host=db" in redact_dsn(keyvalue)
